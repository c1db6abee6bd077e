"""Small real-client helpers for integration tests: produce records, collect or count outputs.

Plain helpers, also used by tests/integration/restart.py (and so by bench/kafka_restart.py);
tests read topics through the ``read_topics``/``read_topic`` fixtures built on :func:`collect`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord

from streams.kafka.produce import produce_records


async def produce(
    bootstrap: str, topic: str, records: Sequence[tuple[bytes | None, bytes | None]]
) -> None:
    """Produce ``(key, value)`` pairs in order (large records allowed) and wait for all."""
    await produce_records(bootstrap, topic, records, max_request_size=4 * 1024 * 1024)


async def collect(
    bootstrap: str,
    topics: Sequence[str],
    *,
    count: int,
    timeout: float = 60.0,
    settle: float = 1.0,
) -> dict[str, list[ConsumerRecord]]:
    """Read ``topics`` from the beginning until ``count`` records arrived, then ``settle``
    seconds more so that duplicates or extras would be seen too."""
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_bytes=16 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
    )
    await consumer.start()
    found: dict[str, list[ConsumerRecord]] = {topic: [] for topic in topics}
    try:
        deadline = time.monotonic() + timeout
        settle_until: float | None = None
        while time.monotonic() < (settle_until or deadline):
            batches = await consumer.getmany(timeout_ms=200)
            for tp, messages in batches.items():
                found[tp.topic].extend(messages)
            if settle_until is None and sum(map(len, found.values())) >= count:
                settle_until = time.monotonic() + settle
    finally:
        await consumer.stop()
    return found


async def count_records(bootstrap: str, topic: str, *, at_least: int, timeout: float) -> int:
    """Read ``topic`` from the beginning until it held ``at_least`` records or ``timeout``
    seconds passed; returns how many were read."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    seen, deadline = 0, time.monotonic() + timeout
    try:
        while seen < at_least and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            seen += sum(map(len, batches.values()))
    finally:
        await consumer.stop()
    return seen
