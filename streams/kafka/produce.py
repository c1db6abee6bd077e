"""Records handed to the producer in per-partition batches, one future per batch.

``producer.send()`` per record costs a partitioner call, an accumulator append
and a future each, and gathering thousands of futures costs more again: about
half the throughput of building each partition's batch here and submitting it
whole (measured for the replay, DESIGN.md's facts). Keys are partitioned as the
Java client does (murmur2), so consumers find each key where they expect it.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterable, Sequence
from typing import Any

import faust
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2
from aiokafka.producer.message_accumulator import BatchBuilder

from streams.pipeline.records import Headers, OutputRecord

#: A submitted batch: the future set on the broker's acknowledgement, and its record count.
Sent = tuple[asyncio.Future[Any], int]


@functools.lru_cache(maxsize=1 << 16)
def key_partition(key: bytes, partitions: int) -> int:
    """The Java client's partition for ``key`` (murmur2); cached, as users come back."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class PartitionBatches:
    """Open batches per (topic, partition): a full one goes at once, the rest on :meth:`submit`."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer
        self._partitions: dict[str, Sequence[int]] = {}
        self._open: dict[tuple[str, int], BatchBuilder] = {}
        self._sent: list[Sent] = []
        self._unkeyed = 0

    async def add(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        *,
        partition: int | None = None,
        headers: Headers | None = None,
    ) -> None:
        """Append a record to its partition's batch (key-hashed when ``partition`` is None)."""
        if partition is None:
            partition = await self._partition_of(topic, key)
        slot = (topic, partition)
        batch = self._open.get(slot)
        if (
            batch is None
            or batch.append(key=key, value=value, timestamp=None, headers=headers) is None
        ):
            if batch is not None:
                await self._submit(slot)
            # A fresh batch always takes its first record; timestamp None = now.
            batch = self._open[slot] = self._producer.create_batch()
            batch.append(key=key, value=value, timestamp=None, headers=headers)

    async def submit(self) -> list[Sent]:
        """Submit every open batch; returns all batches submitted since the last call."""
        for slot in list(self._open):
            await self._submit(slot)
        sent, self._sent = self._sent, []
        return sent

    async def _submit(self, slot: tuple[str, int]) -> None:
        batch = self._open.pop(slot)
        batch.close()
        future = await self._producer.send_batch(batch, slot[0], partition=slot[1])
        self._sent.append((future, batch.record_count()))

    async def _partition_of(self, topic: str, key: bytes | None) -> int:
        partitions = self._partitions.get(topic)
        if partitions is None:
            partitions = self._partitions[topic] = sorted(
                await self._producer.partitions_for(topic)
            )
        if key is None:  # spread unkeyed records (dead letters of keyless input) evenly
            self._unkeyed += 1
            return partitions[self._unkeyed % len(partitions)]
        return partitions[key_partition(key, len(partitions))]


async def send_all(producer: AIOKafkaProducer, outputs: Iterable[OutputRecord]) -> None:
    """Hand every output to ``producer`` in batches, then wait until the broker has them all."""
    batches = PartitionBatches(producer)
    for out in outputs:
        await batches.add(
            out.topic, out.key, out.value, partition=out.partition, headers=out.headers
        )
    sent = await batches.submit()
    if sent:
        await asyncio.gather(*(future for future, _ in sent))


def kafka_producer(app: faust.App) -> AIOKafkaProducer:
    """The started aiokafka producer inside the Faust app's: one producer, Faust's lifecycle."""
    producer: AIOKafkaProducer = app.producer._ensure_producer()
    return producer


async def produce_records(
    bootstrap: str,
    topic: str,
    records: Sequence[tuple[bytes | None, bytes | None]],
    **producer_options: Any,
) -> None:
    """Produce ready ``(key, value)`` pairs in order and wait until all are acknowledged.

    For small keyed topics a command loads whole (``intentstream ads campaigns``), benchmarks
    and tests; ``intentstream replay`` is the way to send event files.
    ``producer_options`` go to ``AIOKafkaProducer``: on a secured cluster, include
    :func:`streams.kafka.security.client_security`.
    """
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **producer_options)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key) for key, value in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
