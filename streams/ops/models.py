"""``intentstream model list|show|prune``: the model store's versions, one version, pruning.

Releasing a version (``model publish``, ``model rollback``) is :mod:`streams.kafka.announce`.

Run ``intentstream model list`` to see the versions of ``INTENTSTREAM_MODEL_STORE``,
``intentstream model publish RUN_OR_CHECKPOINT [--parent V]`` to import a checkpoint
of ``intentstream train`` and make it current, and ``intentstream model rollback V``
to serve an older version again; ``intentstream model show V`` shows one version and
``intentstream model prune [--keep N] [--dry-run]`` deletes every version that is
neither the current one nor in its lineage. Publish and rollback announce the version on the
models topic, so every worker swaps to it; ``CURRENT`` changes only once the broker
has acknowledged that announcement, so a failed command leaves it as it was.
"""

from __future__ import annotations

import math
import os
import shutil
import time
import uuid
from dataclasses import dataclass

from rich.table import Table

from online_learning.errors import UnknownVersion
from online_learning.manifest import read_meta
from online_learning.registry import ModelStore, PrivacySpend, VersionInfo
from streams.ops.failures import CommandError
from streams.ops.status import epsilon_cell

#: Metrics shown by ``model list`` when a version has them (the RankingMetrics names).
KEY_METRICS = ("P@20", "MRR@20", "NDCG@10")


def versions_table(store: ModelStore) -> Table:
    """A table of the store's versions, newest first; ``*`` marks the current one.

    The epsilon column holds a version's whole per-session spend (its ``privacy``,
    which for a version the learner published includes its base version's), or
    ``not DP`` in red for a version that is not DP-trained.
    """
    current = store.current()
    table = Table(title=f"{store.name} versions in {store.root}")
    for column in ("", "version", "parent", "created (UTC)", "metrics", "epsilon", "status"):
        table.add_column(column, no_wrap=column in ("version", "parent"))
    for info in store.versions():
        table.add_row(
            "*" if info.version == current else "",
            info.version,
            info.parent or "-",
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(info.created_at)),
            _metrics_cell(info),
            epsilon_cell(math.inf if info.privacy is None else info.privacy.epsilon),
            info.status if info.reason is None else f"{info.status}: {info.reason}",
        )
    return table


def _metrics_cell(info: VersionInfo) -> str:
    shown = [name for name in KEY_METRICS if name in info.metrics] or sorted(info.metrics)[:3]
    return ", ".join(f"{name} {info.metrics[name]:.2f}" for name in shown) or "-"


def lineage(store: ModelStore, version: str) -> list[str]:
    """``version`` and its ancestors in the store, newest first (a missing parent ends it).

    Raises:
        UnknownVersion: ``version`` is not in the store.
    """
    chain = [store.info(version).version]
    parent = store.info(version).parent
    while parent is not None and parent not in chain:
        try:
            parent_info = store.info(parent)
        except UnknownVersion:  # pruned before, or published from another store
            break
        chain.append(parent_info.version)
        parent = parent_info.parent
    return chain


def version_view(store: ModelStore, version: str) -> str:
    """``model show``: one version's status, lineage, metrics, privacy spend and files.

    Raises:
        UnknownVersion: it is not in the store.
    """
    info = store.info(version)
    privacy = "not DP-trained" if info.privacy is None else _privacy(info, info.privacy)
    files = sorted(p for p in info.path.iterdir() if p.is_file())
    rows = {
        "version": info.version + ("  (current)" if store.current() == info.version else ""),
        "status": info.status if info.reason is None else f"{info.status}: {info.reason}",
        "created": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(info.created_at)),
        "lineage": " <- ".join(lineage(store, version)),
        "metrics": ", ".join(f"{k} {v:.2f}" for k, v in sorted(info.metrics.items())) or "-",
        "privacy": privacy,
        "files": ", ".join(f"{p.name} ({_size(p.stat().st_size)})" for p in files),
        "path": str(info.path),
    }
    return "\n".join(f"{name:<8} {value}" for name, value in rows.items())


@dataclass(frozen=True)
class PrunePlan:
    """What ``model prune`` keeps (the current version's lineage, the newest) and removes."""

    current: str
    kept: list[str]
    removed: list[VersionInfo]


def prune_plan(store: ModelStore, *, keep: int = 0) -> PrunePlan:
    """The versions that are neither ``CURRENT``'s lineage nor among the ``keep`` newest.

    Raises:
        CommandError: the store has no current version, or ``keep`` is negative.
    """
    if keep < 0:
        raise CommandError(f"--keep must be >= 0, got {keep}")
    current = store.current()
    if current is None:
        raise CommandError(
            f"no current version in {store.root} (INTENTSTREAM_MODEL_STORE): publish or roll "
            "back to one first, so that prune knows which lineage to keep"
        )
    infos = store.versions()
    kept = set(lineage(store, current)) | {info.version for info in infos[:keep]}
    return PrunePlan(
        current=current,
        kept=[info.version for info in infos if info.version in kept],
        removed=[info for info in infos if info.version not in kept],
    )


def remove_versions(store: ModelStore, versions: list[VersionInfo]) -> list[str]:
    """Delete ``versions``: each leaves the store by a rename, then its files go.

    A reader sees a version whole or not at all, as in ``ModelStore.prune``.
    """
    removed = []
    for info in versions:
        trash = store.root / f".deleted-{uuid.uuid4().hex}"
        try:
            os.replace(info.path, trash)
        except FileNotFoundError:  # removed meanwhile
            continue
        shutil.rmtree(trash, ignore_errors=True)
        removed.append(info.version)
    return removed


def _privacy(info: VersionInfo, privacy: PrivacySpend) -> str:
    spend = f"epsilon {privacy.epsilon:.3g}, delta {privacy.delta:g} per session"
    parts = read_meta(info.version, info.path).get("privacy") or {}
    shown = [
        f"{name} epsilon {part['epsilon']:.3g}"
        for name, part in parts.items()
        if isinstance(part, dict) and isinstance(part.get("epsilon"), int | float)
    ]
    return spend + (f" (of which {', '.join(shown)})" if shown else "")


def _size(size: int) -> str:
    """Examples:
    >>> _size(512), _size(3 * 1024 * 1024)
    ('512 B', '3.0 MiB')
    """
    scaled = float(size)
    for unit in ("B", "KiB", "MiB"):
        if scaled < 1024:
            return f"{scaled:.0f} {unit}" if unit == "B" else f"{scaled:.1f} {unit}"
        scaled /= 1024
    return f"{scaled:.1f} GiB"
