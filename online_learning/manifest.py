"""The files of a stored model version: SHA-256 manifest, verified reads, atomic writes.

A version folder holds :data:`FILES`, the served ranker's parts and its click
calibrator when it has them (:data:`OPTIONAL_FILES`), and ``MANIFEST.json``::

    {"algorithm": "sha256",
     "files": {"meta.json": {"bytes": 1843, "sha256": "9f86d0..."},
               "vocab.json": {...}, "weights.pt": {...}}}

Each file is read once, checked against the manifest, and the model is built
from those same bytes, so a file changed between the check and the load cannot
be served.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from model.calibration import CALIBRATION_FILE
from model.checkpoint import Checkpoint, read_calibrator
from model.config import ScorerConfig
from model.ranking.parts import RANKER_FILE, RankerParts
from model.scorer import SequenceScorer
from model.vocab import ItemVocab
from online_learning.errors import ModelRejected

#: The files every version has, listed in its manifest.
FILES = ("weights.pt", "vocab.json", "meta.json")
#: Files a version may have: the served ranker's mix and kNN index, its click calibrator.
OPTIONAL_FILES = (RANKER_FILE, CALIBRATION_FILE)
MANIFEST = "MANIFEST.json"

_SHA256 = re.compile(r"[0-9a-f]{64}")


def manifest(files: Mapping[str, bytes]) -> bytes:
    """``MANIFEST.json`` of the files ``{name: content}``."""
    entries = {
        name: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        for name, data in sorted(files.items())
    }
    return json.dumps({"algorithm": "sha256", "files": entries}, indent=2).encode()


def manifest_digest(data: bytes) -> str:
    """SHA-256 (hex) of a ``MANIFEST.json``: what a signed announcement pins."""
    return hashlib.sha256(data).hexdigest()


def read_verified(version: str, folder: Path, *, pinned: str | None = None) -> dict[str, bytes]:
    """The version's files, each read once and checked against the manifest.

    Args:
        version: the version id, for the error messages.
        folder: the version's folder.
        pinned: the manifest's SHA-256 as a signed announcement names it, if any.

    Raises:
        ModelRejected: no or an unreadable manifest, or one other than ``pinned``;
            a file missing, or of another size or SHA-256 than the manifest says.
    """
    files = {}
    for name, (digest, size) in _read_manifest(version, folder, pinned).items():
        try:
            data = (folder / name).read_bytes()
        except OSError as exc:
            raise ModelRejected(version, f"cannot read {name}: {exc.strerror or exc}") from None
        if len(data) != size:
            raise ModelRejected(version, f"{name} has {len(data)} bytes, the manifest {size}")
        if hashlib.sha256(data).hexdigest() != digest:
            raise ModelRejected(version, f"{name} does not match its SHA-256 in {MANIFEST}")
        files[name] = data
    return files


def _read_manifest(version: str, folder: Path, pinned: str | None) -> dict[str, tuple[str, int]]:
    """``{file: (sha256, bytes)}`` for :data:`FILES` and any of :data:`OPTIONAL_FILES`."""
    try:
        data = (folder / MANIFEST).read_bytes()
        body = json.loads(data)
    except FileNotFoundError:
        raise ModelRejected(version, f"no {MANIFEST}") from None
    except (OSError, ValueError) as exc:
        raise ModelRejected(version, f"unreadable {MANIFEST}: {exc}") from None
    if pinned is not None and manifest_digest(data) != pinned:
        raise ModelRejected(version, f"{MANIFEST} is not the one its announcement names")
    if not isinstance(body, dict):
        raise ModelRejected(version, f"{MANIFEST} is not a JSON object")
    entries = body.get("files")
    if body.get("algorithm") != "sha256" or not isinstance(entries, dict):
        raise ModelRejected(version, f"{MANIFEST} is not a sha256 manifest")
    if not set(FILES) <= set(entries) <= set(FILES + OPTIONAL_FILES):
        listed, optional = ", ".join(FILES), " or ".join(OPTIONAL_FILES)
        raise ModelRejected(version, f"{MANIFEST} must list {listed} and nothing but {optional}")
    out = {}
    for name, entry in entries.items():
        digest = entry.get("sha256") if isinstance(entry, dict) else None
        size = entry.get("bytes") if isinstance(entry, dict) else None
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise ModelRejected(version, f"{MANIFEST} has no valid sha256 for {name}")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ModelRejected(version, f"{MANIFEST} has no valid size for {name}")
        out[name] = (digest, size)
    return out


def read_meta(version: str, folder: Path) -> dict[str, Any]:
    """``meta.json`` of a version, not verified (for listing).

    Raises:
        ModelRejected: it is missing, unreadable or not a JSON object.
    """
    try:
        data = (folder / "meta.json").read_bytes()
    except OSError as exc:
        raise ModelRejected(version, f"cannot read meta.json: {exc.strerror or exc}") from None
    meta: dict[str, Any] = _json(version, data, "meta.json", dict)
    return meta


def decode(version: str, files: Mapping[str, bytes], folder: Path) -> Checkpoint:
    """Build the checkpoint from verified bytes (model on the CPU, in eval mode).

    Raises:
        ModelRejected: ``meta.json`` names another version or has no valid scorer
            config; ``vocab.json`` is not a list of distinct item ids that fits the
            model; or the weights do not load into the model.
    """
    meta = _json(version, files["meta.json"], "meta.json", dict)
    if meta.get("version") != version:
        raise ModelRejected(version, f"meta.json names version {meta.get('version')!r}")
    config = meta.get("config")
    try:
        model = SequenceScorer(ScorerConfig.from_dict(config if isinstance(config, dict) else {}))
    except (TypeError, ValueError) as exc:
        raise ModelRejected(version, f"meta.json has no valid scorer config: {exc}") from None
    ids = _json(version, files["vocab.json"], "vocab.json", list)
    vocab = ItemVocab.build([ids])
    if not all(isinstance(i, str) and i for i in ids) or len(vocab) != len(ids) + 1:
        raise ModelRejected(version, "vocab.json is not a list of distinct item ids")
    if len(vocab) > model.config.n_items:
        raise ModelRejected(version, "vocab.json has more items than the model")
    try:
        state = torch.load(io.BytesIO(files["weights.pt"]), map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    # torch.load reports corrupt input as ValueError, KeyError, EOFError, RuntimeError,
    # UnpicklingError and more; whichever it is, a bad version must not crash a worker.
    except Exception as exc:
        raise ModelRejected(version, f"weights do not load: {type(exc).__name__}: {exc}") from None
    parts = None
    if RANKER_FILE in files:
        try:
            parts = RankerParts.from_bytes(files[RANKER_FILE], n_items=model.config.n_items)
        except ValueError as exc:
            raise ModelRejected(version, f"{RANKER_FILE}: {exc}") from None
    calibrator = None
    if CALIBRATION_FILE in files:
        try:
            calibrator = read_calibrator(files[CALIBRATION_FILE])
        except ValueError as exc:
            raise ModelRejected(version, f"{CALIBRATION_FILE}: {exc}") from None
    return Checkpoint(
        model=model.eval(),
        vocab=vocab,
        meta=meta,
        path=folder,
        ranking=parts,
        calibrator=calibrator,
    )


def _json(version: str, data: bytes, name: str, kind: type[Any]) -> Any:
    try:
        body = json.loads(data)
    except ValueError as exc:
        raise ModelRejected(version, f"unreadable {name}: {exc}") from None
    if not isinstance(body, kind):
        expected = "an object" if kind is dict else "an array"
        raise ModelRejected(version, f"{name} is not {expected}")
    return body


def write_synced(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` and flush it to disk."""
    with open(path, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def write_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary file and ``os.replace``: readers see old or new, never half."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write_synced(temporary, data)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    sync_dir(path.parent)


def sync_dir(path: Path) -> None:
    """Persist renames in ``path`` (POSIX keeps a directory entry in its parent folder)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
