"""The per-user feature table, keyed by pseudonym, holding compact state bytes."""

from __future__ import annotations

import faust

from streams.settings import Settings

USER_TABLE = "user_features"


def build_user_table(app: faust.App, settings: Settings) -> faust.Table:
    """Declare ``user_features``: co-partitioned with ``shop.events``.

    The agent writes a batch's changelog records itself, each to the partition
    of the event it came from, so a user's state lives with the partition that
    receives their events (see ``streams.agents``).
    """
    return app.Table(
        USER_TABLE,
        key_type=bytes,  # bytes keys/values use the "raw" codec
        value_type=bytes,
        partitions=settings.partitions,
        default=None,
    )
