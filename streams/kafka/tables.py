"""The per-user tables, keyed by pseudonym: sealed feature state, and wrapped data keys."""

from __future__ import annotations

import faust

from streams.settings import Settings

USER_TABLE = "user_state"
KEY_TABLE = "user_keys"

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
