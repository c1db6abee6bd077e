"""The worker's tables: per-user sealed state and sealed ledgers (by pseudonym), release marks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import faust

from streams.pipeline.working_set import TableChanges
from streams.settings import Settings

USER_TABLE = "user_state"
KEY_TABLE = "user_keys"
#: Per input partition, the first privacy window not yet released (``SharedCounts``).
RELEASES_TABLE = "shared_releases"

#: Changelog settings of ``user_keys``: compact soon after a key is destroyed, so the
#: superseded wrapped key is gone from the broker within minutes, not days
#: (crypto-shredding; docs/privacy.md). Apache Kafka honours them; Tansu keeps
#: everything in memory until it restarts.
KEY_CHANGELOG_CONFIGS: dict[str, str] = {
    "segment.ms": "10000",
    "min.cleanable.dirty.ratio": "0.01",
    "min.compaction.lag.ms": "0",
    "delete.retention.ms": "10000",
}


@dataclass(frozen=True)
class WorkerTables:
    """The tables a worker keeps, each co-partitioned with ``shop.events``."""

    users: faust.Table
    keys: faust.Table
    releases: faust.Table

    def changelogs(self) -> tuple[str, str, str]:
        """The changelog topics of users, keys and releases."""
        return (
            self.users.changelog_topic.get_topic_name(),
            self.keys.changelog_topic.get_topic_name(),
            self.releases.changelog_topic.get_topic_name(),
        )

    def release_marks(self) -> dict[int, float]:
        """The durable release marks of the partitions this worker holds."""
        return {int(key): float(value) for key, value in self.releases.data.items()}


def build_tables(app: faust.App, settings: Settings) -> WorkerTables:
    """Declare the worker's three tables."""
    releases = app.Table(
        RELEASES_TABLE,
        key_type=bytes,
        value_type=bytes,
        partitions=settings.partitions,
        default=None,
    )
    return WorkerTables(build_user_table(app, settings), build_key_table(app, settings), releases)


def reader(table: faust.Table) -> Callable[[bytes], bytes | None]:
    """``table``'s lookup by key, None when absent, on its in-memory store's own dict.

    The store's mapping API raises and catches a KeyError for every absent key (every
    new user); the dict's ``get`` does not, and sees exactly what
    :func:`write_changes` and changelog recovery wrote.
    """
    get: Callable[[bytes], bytes | None] = table.data.data.get
    return get


def write_changes(table: faust.Table, changes: TableChanges) -> None:
    """Write a batch's changes into ``table``'s in-memory store, noting each key's partition.

    Faust's memory store drops the keys of partitions given away to another worker
    only when it knows their partition, which it learns from changelog recovery, not
    from writes like these. Without the note a user's state from a partition handed
    over would stay here and come back, stale or erased since, when the partition
    returns (recovery replays only what the compacted changelog still holds).
    """
    store = table.data
    partitions = store._key_partition
    data = store.data
    for key, (partition, value) in changes.items():
        if value is None:
            data.pop(key, None)
            partitions.pop(key, None)
        else:
            data[key] = value
            partitions[key] = partition


def build_user_table(app: faust.App, settings: Settings) -> faust.Table:
    """Declare ``user_state``: co-partitioned with ``shop.events``.

    The agent writes a batch's changelog records itself, each to the partition
    of the event it came from, so a user's state lives with the partition that
    receives their events (see ``streams.worker.handler``).
    """
    return app.Table(
        USER_TABLE,
        key_type=bytes,  # bytes keys/values use the "raw" codec
        value_type=bytes,
        partitions=settings.partitions,
        default=None,
    )


def build_key_table(app: faust.App, settings: Settings) -> faust.Table:
    """Declare ``user_keys``: wrapped data keys, co-partitioned like ``user_state``."""
    return app.Table(
        KEY_TABLE,
        key_type=bytes,
        value_type=bytes,
        partitions=settings.partitions,
        default=None,
        extra_topic_configs=KEY_CHANGELOG_CONFIGS,
    )
