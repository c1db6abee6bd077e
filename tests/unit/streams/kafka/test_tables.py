"""The worker's tables: read as written, and they forget the users of partitions given away."""

from __future__ import annotations

import asyncio

import faust
from faust.types import TP

from streams.kafka.tables import reader, write_changes


def test_a_partition_given_away_takes_its_users_with_it() -> None:
    app = faust.App("tables-test", store="memory://", autodiscover=False)
    table = app.Table("user_keys", key_type=bytes, value_type=bytes, partitions=2, default=None)
    write_changes(table, {b"kept": (0, b"ledger-0"), b"gone": (1, b"ledger-1")})
    write_changes(table, {b"erased": (1, b"x")})
    write_changes(table, {b"erased": (1, None)})
    # A rebalance leaves this worker partition 0 only: partition 1's users must not linger,
    # or they would come back, stale or erased since, when the partition returns.
    changelog = table.changelog_topic.get_topic_name()
    asyncio.run(table.data.on_recovery_completed({TP(changelog, 0)}, set()))
    assert dict(table.data.data) == {b"kept": b"ledger-0"}


def test_the_reader_sees_writes_and_erasures_and_answers_none_for_strangers() -> None:
    app = faust.App("reader-test", store="memory://", autodiscover=False)
    table = app.Table("user_state", key_type=bytes, value_type=bytes, partitions=2, default=None)
    read = reader(table)
    assert read(b"new") is None
    write_changes(table, {b"u": (1, b"state")})
    assert read(b"u") == b"state"
    write_changes(table, {b"u": (1, None)})
    assert read(b"u") is None
