"""Deletes the state, key and ledger of users inactive for ``state_ttl_seconds``.

Why: anyone who can produce events can invent users, and each costs memory on
the worker that owns them; expiry bounds that by activity, not by trust. A user's
ledger records when they were last active (coarsely, see ``LAST_SEEN_STEPS``);
every tenth of the TTL a worker opens the ledgers it holds in a thread and
deletes the stale ones in the event loop, skipping any that changed meanwhile
(the user came back). The TTL is at least the retention of the raw-id topics,
so an erased user's marker outlives every event of theirs still in a topic.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from streams.kafka.produce import kafka_producer, send_all
from streams.kafka.tables import WorkerTables, write_changes
from streams.kafka.transport import BatchingApp
from streams.pipeline.build import LAST_SEEN_STEPS
from streams.pipeline.ledger import LedgerSealer, inactive_users
from streams.pipeline.records import OutputRecord
from streams.settings import Settings

log = logging.getLogger(__name__)


def register_expiry(
    app: BatchingApp,
    *,
    settings: Settings,
    tables: WorkerTables,
    ledgers: LedgerSealer,
    on_expired: Callable[[Iterable[bytes]], None],
) -> None:
    """Run the expiry sweep every ``state_ttl_seconds / LAST_SEEN_STEPS``.

    ``on_expired`` gets the pseudonyms of the users deleted (their latest lists go too).
    """
    ttl = settings.state_ttl_seconds
    users_topic, keys_topic, _ = tables.changelogs()

    @app.timer(ttl / LAST_SEEN_STEPS)
    async def expire_inactive_users() -> None:
        store = tables.keys.data
        snapshot = list(store.data.items())
        stale = await asyncio.to_thread(
            inactive_users, snapshot, ledgers, seen_before=time.time() - ttl
        )
        before = dict(snapshot)
        partitions = store._key_partition
        # No await from here to the writes: no batch runs in between.
        gone = {
            user: (partitions[user], None)
            for user in stale
            if store.data.get(user) is before[user] and user in partitions
        }
        if not gone:
            return
        write_changes(tables.users, gone)
        write_changes(tables.keys, gone)
        on_expired(gone)
        records = [
            OutputRecord(topic=topic, key=user, value=None, partition=partition)
            for topic in (users_topic, keys_topic)
            for user, (partition, _) in gone.items()
        ]
        await send_all(kafka_producer(app), records)
        log.info("expired %d users inactive for %.0f s", len(gone), ttl)
