"""Reads a whole small topic from the beginning and keeps following it, outside any group.

The item catalogue and the model announcements are small and every worker needs
all of them, not the partitions its consumer group gave it. Without a group,
aiokafka assigns the consumer every partition of the subscribed topic, and with
no committed offsets it starts at the beginning. ``loaded`` is set once the
consumer has read up to the end offsets it found at start, so a worker can
wait for it before it reports ready; :func:`read_to_end` stops there.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.kafka.consumed import input_records
from streams.kafka.security import client_security
from streams.pipeline.records import InputRecord
from streams.settings import Settings

POLL_TIMEOUT_MS = 500
MAX_POLL_RECORDS = 1_024

#: Handles one poll's records, in offset order per partition.
Apply = Callable[[list[InputRecord]], Awaitable[None]]


async def follow(settings: Settings, topic: str, *, apply: Apply, loaded: asyncio.Event) -> None:
    """Feed every record of ``topic`` to ``apply``, from the beginning, until cancelled."""
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


async def _reached(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    for partition, end in ends.items():
        if await consumer.position(partition) < end:
            return False
    return True
