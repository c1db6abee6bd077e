"""Model store: published scorer versions, verified on load, and the CURRENT pointer.

Every version the online learner (or ``intentstream model publish``) publishes is
a checkpoint folder in the store, never changed afterwards, plus an
:class:`~online_learning.announcement.Announcement` on the models topic so that
workers swap to it. A worker :meth:`~ModelStore.load` s the announced version,
which checks the SHA-256 manifest (:mod:`online_learning.manifest`) before it
reads any weights; when that raises :class:`~online_learning.errors.ModelRejected`,
or probation (:mod:`online_learning.probation`) rejects the version's online metrics,
the worker keeps its previous model.

Layout of a store (``Settings.model_store``, ``~/.cache/intentstream/models`` by default)::

    <root>/
      CURRENT                    id of the version to serve (replaced atomically)
      <version>/                 one version, e.g. seq-2026-11-28T030000Z-ab12cd34
        weights.pt               state dict of the SequenceScorer
        vocab.json               item ids from index 1 on (0 is padding)
        meta.json                config, version, parent, created_at, metrics, privacy,
                                 model_name, source (+ the training checkpoint's meta)
        ranker.npz               the served ranker's mix and kNN index, when trained with one
        calibration.json         click and purchase probabilities by rank, when fitted
        MANIFEST.json            size and SHA-256 of the files above
        REJECTED                 only once rejected: {"reason", "rejected_at"}
      .staging-<hex>/            a publish in progress, renamed into place when complete
      .deleted-<hex>/            a pruned version on its way out (:meth:`ModelStore.prune`)

Publishing writes the folder under ``.staging-*``, loads it back, and renames it
with ``os.replace``, so a reader sees a version whole or not at all; ``CURRENT``
and ``REJECTED`` are replaced the same way. A rollback is
:meth:`ModelStore.set_current` with an older accepted version. Workers only read
the store: what one worker concludes about a version stays with that worker.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from model.checkpoint import Checkpoint
from online_learning.announcement import (
    Announcement,
    PrivacySpend,
    finite_number,
    is_version_id,
    parse_metrics,
)
from online_learning.errors import ModelRejected, RegistryError, UnknownVersion
from online_learning.manifest import (
    MANIFEST,
    decode,
    manifest,
    manifest_digest,
    read_meta,
    read_verified,
    sync_dir,
    write_atomic,
    write_synced,
)
from online_learning.sources import provenance, source_files, version_id

__all__ = [
    "CURRENT",
    "DEFAULT_MODEL_NAME",
    "REJECTED",
    "Announcement",
    "ModelStore",
    "PrivacySpend",
    "VersionInfo",
]

#: Model name announced when none is configured (``Settings.model_name``).
DEFAULT_MODEL_NAME = "intentstream-scorer"
CURRENT = "CURRENT"
REJECTED = "REJECTED"

Status = Literal["accepted", "rejected"]


@dataclass(frozen=True)
class VersionInfo:
    """One version of the store, as listed by :meth:`ModelStore.versions`.

    ``status`` is ``"rejected"`` when the version was marked rejected or its
    ``meta.json`` cannot be read; ``reason`` then says why.
    """

    version: str
    parent: str | None
    created_at: float
    metrics: Mapping[str, float]
    privacy: PrivacySpend | None
    status: Status
    path: Path
    reason: str | None = None


@dataclass(frozen=True)
class ModelStore:
    """Published scorer versions in a folder (see the module docstring for the layout).

    Args:
        root: the store folder, created on first publish.
        name: model name announced for its versions.
        clock: seconds since the epoch, for ``created_at`` and version ids.
    """

    root: Path
    name: str = DEFAULT_MODEL_NAME
    clock: Callable[[], float] = field(default=time.time, repr=False)

    def path(self, version: str) -> Path:
        """Folder of ``version``.

        Raises:
            UnknownVersion: the id is invalid or not in the store.
        """
        if not is_version_id(version) or not (self.root / version).is_dir():
            raise UnknownVersion(f"no model version {version!r} in {self.root}")
        return self.root / version

    def publish(
        self,
        source: Path | Checkpoint,
        *,
        parent: str | None,
        metrics: Mapping[str, float],
        privacy: Mapping[str, Any] | None,
    ) -> Announcement:
        """Copy a checkpoint into the store as a new version, verified and atomically.

        Args:
            source: a checkpoint folder (or a run folder, whose ``LATEST`` is used)
                written by ``intentstream train``, or a loaded or updated
                :class:`~model.checkpoint.Checkpoint` (its ``path`` is not read).
                Optimizer state is not copied: the store is for serving.
            parent: the version it was learned from (must be in the store), or None.
            metrics: finite numbers, kept in ``meta.json`` and announced.
            privacy: the privacy spent (``epsilon`` and ``delta``; other keys are
                kept in ``meta.json``), or None for a non-private model.

        Returns:
            The announcement to send on the models topic. ``CURRENT`` is unchanged.

        Raises:
            UnknownVersion: ``parent`` is not in the store.
            RegistryError: ``source`` is not a readable checkpoint, or the same
                content was already published in the same second.
            ModelRejected: the copy does not load; nothing is stored.
            ValueError: ``metrics`` or ``privacy`` are invalid.
        """
        if parent is not None:
            self.path(parent)
        metrics = parse_metrics(metrics)
        spend = PrivacySpend.from_json(privacy)
        files, source_meta = source_files(source)
        now = self.clock()
        version = version_id(now, files["weights.pt"], files["vocab.json"])
        meta = {
            **source_meta,
            "version": version,
            "parent": parent,
            "created_at": now,
            "metrics": metrics,
            "privacy": None if privacy is None else dict(privacy),
            "model_name": self.name,
            "source": provenance(source, source_meta),
        }
        meta_bytes = json.dumps(meta, indent=2, sort_keys=True, default=str).encode()
        files["meta.json"] = meta_bytes
        listing = manifest(files)
        final = self._write_version(version, files, listing)
        digest = manifest_digest(listing)
        return Announcement(self.name, version, parent, str(final), metrics, spend, now, digest)

    def _write_version(self, version: str, files: Mapping[str, bytes], listing: bytes) -> Path:
        final = self.root / version
        if final.exists():
            raise RegistryError(f"model version {version} is already in {self.root}")
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f".staging-{uuid.uuid4().hex}"
        staging.mkdir()
        try:
            for name, data in files.items():
                write_synced(staging / name, data)
            write_synced(staging / MANIFEST, listing)
            decode(version, read_verified(version, staging), staging)
            try:
                os.replace(staging, final)
            except OSError as exc:
                raise RegistryError(f"cannot store model version {version}: {exc}") from exc
        finally:
            if staging.exists():
                shutil.rmtree(staging)
        sync_dir(self.root)
        return final

    def versions(self) -> list[VersionInfo]:
        """Every version in the store, newest first (by ``created_at``, then id)."""
        if not self.root.is_dir():
            return []
        names = [p.name for p in self.root.iterdir() if p.is_dir() and is_version_id(p.name)]
        infos = [self.info(name) for name in names]
        return sorted(infos, key=lambda info: (info.created_at, info.version), reverse=True)

    def prune(self, *, keep: int) -> list[str]:
        """Delete all but the ``keep`` newest versions; CURRENT and its parent always stay.

        Bounds the store's disk use whoever publishes (the learner publishes for ever).
        A folder leaves the version namespace by a rename before it is deleted, so a
        reader sees a version whole or not at all.

        Returns:
            The deleted version ids.

        Raises:
            ValueError: ``keep`` is below 1.
        """
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        infos = self.versions()
        by_id = {info.version: info for info in infos}
        current = by_id.get(self.current() or "")
        kept = {info.version for info in infos[:keep]}
        if current is not None:
            kept |= {current.version, current.parent or ""}
        deleted = []
        for info in infos[keep:]:
            if info.version in kept:
                continue
            trash = self.root / f".deleted-{uuid.uuid4().hex}"
            try:
                os.replace(info.path, trash)
            except FileNotFoundError:  # another publisher pruned it first
                continue
            deleted.append(info.version)
        for leftover in self.root.glob(".deleted-*"):  # also those a crash left behind
            shutil.rmtree(leftover, ignore_errors=True)
        if deleted:
            sync_dir(self.root)
        return deleted

    def info(self, version: str) -> VersionInfo:
        """What the store knows of ``version``, without verifying its files.

        Raises:
            UnknownVersion: it is not in the store.
        """
        path = self.path(version)
        reason = self._rejection(version)
        try:
            meta = read_meta(version, path)
        except ModelRejected as exc:
            mtime = path.stat().st_mtime
            return VersionInfo(version, None, mtime, {}, None, "rejected", path, exc.reason)
        parent, created = meta.get("parent"), meta.get("created_at", 0.0)
        try:
            metrics = parse_metrics(meta.get("metrics") or {})
            privacy = PrivacySpend.from_json(meta.get("privacy"))
        except ValueError:
            metrics, privacy = {}, None
        return VersionInfo(
            version=version,
            parent=parent if is_version_id(parent) else None,
            created_at=float(created) if created is not None and finite_number(created) else 0.0,
            metrics=metrics,
            privacy=privacy,
            status="accepted" if reason is None else "rejected",
            path=path,
            reason=reason,
        )

    def announcement(self, version: str) -> Announcement:
        """The announcement of a stored version, e.g. to announce it again on rollback.

        Raises:
            UnknownVersion: it is not in the store.
            ModelRejected: its ``meta.json`` or ``MANIFEST.json`` cannot be read.
        """
        path = self.path(version)
        read_meta(version, path)
        try:
            digest = manifest_digest((path / MANIFEST).read_bytes())
        except OSError as exc:
            raise ModelRejected(version, f"cannot read {MANIFEST}: {exc.strerror or exc}") from None
        info = self.info(version)
        return Announcement(
            self.name,
            version,
            info.parent,
            str(info.path),
            info.metrics,
            info.privacy,
            info.created_at,
            digest,
        )

    def load(self, version: str, *, pinned: str | None = None) -> Checkpoint:
        """Verify ``version`` against its manifest, then load it for scoring (on the CPU).

        Args:
            version: the version id.
            pinned: SHA-256 its ``MANIFEST.json`` must have (a signed announcement's
                ``manifest``); None checks the files against whatever manifest is there.

        Returns:
            The checkpoint, model in eval mode, ``meta["version"] == version``;
            serve it with :class:`model.serving.scorers.CheckpointScorer`.

        Raises:
            UnknownVersion: it is not in the store.
            ModelRejected: it was marked rejected; its manifest is missing,
                unreadable or not ``pinned``; a file is missing or differs from the manifest;
                ``meta.json`` or ``vocab.json`` is invalid; or the weights do not
                load into the configured model.
        """
        path = self.path(version)
        reason = self._rejection(version)
        if reason is not None:
            raise ModelRejected(version, f"marked rejected: {reason}")
        return decode(version, read_verified(version, path, pinned=pinned), path)

    def verify(self, version: str, *, pinned: str | None = None) -> Checkpoint:
        """:meth:`load`, marking the version rejected when it fails for a new reason.

        Raises:
            UnknownVersion: it is not in the store.
            ModelRejected: as :meth:`load`.
        """
        already = self._rejection(version) is not None
        try:
            return self.load(version, pinned=pinned)
        except ModelRejected as exc:
            if not already:
                self.mark_rejected(version, exc.reason)
            raise

    def mark_rejected(self, version: str, reason: str) -> None:
        """Record that ``version`` must not be served; it stays listed, CURRENT is unchanged.

        Raises:
            UnknownVersion: it is not in the store.
        """
        body = {"reason": reason, "rejected_at": self.clock()}
        write_atomic(self.path(version) / REJECTED, json.dumps(body).encode())

    def current(self) -> str | None:
        """The version ``CURRENT`` names, or None before the first :meth:`set_current`."""
        try:
            text = (self.root / CURRENT).read_text().strip()
        except FileNotFoundError:
            return None
        return text or None

    def set_current(self, version: str, *, verify: bool = True) -> None:
        """Point ``CURRENT`` at ``version`` (a rollback when it is an older one).

        Args:
            version: an accepted version of the store.
            verify: :meth:`verify` it first; pass False only right after a
                successful :meth:`verify` of the same version.

        Raises:
            UnknownVersion: it is not in the store.
            ModelRejected: it was rejected, or fails verification (and is then
                marked rejected). ``CURRENT`` is then left as it was.
        """
        reason = self._rejection(version)
        if reason is not None:
            raise ModelRejected(version, f"marked rejected: {reason}")
        if verify:
            self.verify(version)
        write_atomic(self.root / CURRENT, f"{version}\n".encode())

    def _rejection(self, version: str) -> str | None:
        """Why ``version`` was marked rejected, or None."""
        try:
            body = json.loads((self.path(version) / REJECTED).read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return "unreadable REJECTED marker"
        reason = body.get("reason") if isinstance(body, dict) else None
        return str(reason) if reason else "no reason given"
