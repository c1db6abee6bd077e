"""``intentstream model list``: the model store's versions as a table.

Releasing a version (``model publish``, ``model rollback``) is :mod:`streams.kafka.announce`.

Run ``intentstream model list`` to see the versions of ``INTENTSTREAM_MODEL_STORE``,
``intentstream model publish RUN_OR_CHECKPOINT [--parent V]`` to import a checkpoint
of ``intentstream train`` and make it current, and ``intentstream model rollback V``
to serve an older version again. Publish and rollback announce the version on the
models topic, so every worker swaps to it; ``CURRENT`` changes only once the broker
has acknowledged that announcement, so a failed command leaves it as it was.
"""

from __future__ import annotations

import math
import time

from rich.table import Table

from online_learning.registry import ModelStore, VersionInfo
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
