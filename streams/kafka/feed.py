"""Reads a whole small topic from the beginning and keeps following it, outside any group.

The item catalogue and the model announcements are small and every worker needs
all of them, not the partitions its consumer group gave it. Without a group,
aiokafka assigns the consumer every partition of the subscribed topic, and with
no committed offsets it starts at the beginning. ``loaded`` is set once the
consumer has read up to the end offsets it found at start, so a worker can
wait for it before it reports ready; :func:`read_to_end` stops there. A feed of
a keyed topic folds each poll with :func:`fold_latest`: the last record of a key
wins, a tombstone removes the key, and a record that does not parse is a dead
letter with its reason, like a bad event.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.kafka.consumed import input_records
from streams.kafka.security import client_security
from streams.pipeline.records import InputRecord, OutputRecord, Sealer, dead_letter
from streams.pipeline.validation import Rejection
from streams.settings import Settings

POLL_TIMEOUT_MS = 500
MAX_POLL_RECORDS = 1_024

#: Handles one poll's records, in offset order per partition.
Apply = Callable[[list[InputRecord]], Awaitable[None]]

T = TypeVar("T")


@dataclass
class KeyedChanges(Generic[T]):
    """What one poll of a keyed topic changes: each key's latest value, the keys removed
    (by a tombstone after their last value) and the dead letters of records that did not
    parse."""

    latest: dict[str, T] = field(default_factory=dict)
    removed: set[str] = field(default_factory=set)
    dead_letters: list[OutputRecord] = field(default_factory=list)


def fold_latest(
    records: Sequence[InputRecord],
    parse: Callable[[InputRecord], tuple[str, T] | Rejection],
    *,
    dlq_topic: str,
    seal: Sealer,
) -> KeyedChanges[T]:
    """Fold records in offset order: the last record of a key wins, a tombstone removes it.

    ``parse`` turns a record that is not a tombstone into its key and value, or says why
    it is rejected. A key's first record fixes its place in ``latest`` unless a
    tombstone came between.
    """
    changes: KeyedChanges[T] = KeyedChanges()
    for record in records:
        if record.value is None and record.key:
            key = record.key.decode("utf-8", "replace")
            changes.latest.pop(key, None)
            changes.removed.add(key)
            continue
        outcome = parse(record)
        if isinstance(outcome, Rejection):
            changes.dead_letters.append(dead_letter(record, outcome, topic=dlq_topic, seal=seal))
            continue
        key, value = outcome
        changes.removed.discard(key)
        changes.latest[key] = value
    return changes


async def follow(
    settings: Settings,
    topic: str,
    *,
    apply: Apply,
    loaded: asyncio.Event,
    since: float | None = None,
) -> None:
    """Feed every record of ``topic`` to ``apply``, from the beginning, until cancelled.

    With ``since`` (epoch seconds), each partition starts at its first record stamped
    at or after it instead (its end when there is none): for a topic whose old records
    no longer matter.
    """
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
        **client_security(settings),
    )
    await consumer.start()
    ends: dict[TopicPartition, int] = {}
    try:
        if since is not None:
            await _seek_to_time(consumer, since)
        while True:
            batches = await consumer.getmany(
                timeout_ms=POLL_TIMEOUT_MS, max_records=MAX_POLL_RECORDS
            )
            records = input_records(batches.values())
            if records:
                await apply(records)
            if loaded.is_set() or not consumer.assignment():
                continue
            ends = ends or await consumer.end_offsets(list(consumer.assignment()))
            if await _reached(consumer, ends):
                loaded.set()
    finally:
        await consumer.stop()


def read_to_end(settings: Settings, topic: str) -> list[InputRecord]:
    """Every record of ``topic`` up to the end offsets found at start, in offset order."""
    return asyncio.run(_read_to_end(settings, topic))


async def _read_to_end(settings: Settings, topic: str) -> list[InputRecord]:
    records: list[InputRecord] = []
    loaded = asyncio.Event()

    async def keep(batch: list[InputRecord]) -> None:
        records.extend(batch)

    reading = asyncio.create_task(follow(settings, topic, apply=keep, loaded=loaded))
    waiting = asyncio.create_task(loaded.wait())
    await asyncio.wait({reading, waiting}, return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    reading.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reading  # re-raises what stopped the reader before the end, if anything
    return records


async def _seek_to_time(consumer: AIOKafkaConsumer, since: float) -> None:
    """Move each partition to its first record stamped at or after ``since``.

    Without a group the partitions are assigned once the topic's metadata arrives; a
    seek drops whatever was fetched from the beginning before it.
    """
    while not consumer.assignment():
        await asyncio.sleep(POLL_TIMEOUT_MS / 10_000)
    partitions = list(consumer.assignment())
    found = await consumer.offsets_for_times({tp: round(since * 1000) for tp in partitions})
    ends = await consumer.end_offsets(partitions)
    for tp in partitions:
        at = found.get(tp)
        consumer.seek(tp, at.offset if at is not None else ends[tp])


async def _reached(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    for partition, end in ends.items():
        if await consumer.position(partition) < end:
            return False
    return True
