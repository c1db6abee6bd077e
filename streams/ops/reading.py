"""Read a whole topic outside any consumer group: up to its end, or on as records arrive.

What ``intentstream dlq`` reads its dead letters with (``tail`` reads the
recommendations with ``streams.client``): every partition from its beginning
(or from its end, to follow only new records), nothing committed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from streams.kafka.security import client_security
from streams.ops.failures import CommandError
from streams.settings import Settings

POLL_MS = 500


async def read_topic(
    settings: Settings,
    topic: str,
    *,
    follow: bool = False,
    from_beginning: bool = True,
    variable: str | None = None,
) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """The records of ``topic``, partition by partition in offset order within each.

    Args:
        settings: broker address and security.
        topic: the topic to read.
        follow: go on past the end offsets found at start until cancelled; else stop there.
        from_beginning: start at each partition's oldest record, else at its end.
        variable: the setting naming ``topic``, for the error when it does not exist.

    Raises:
        CommandError: there is no such topic.
        aiokafka.errors.KafkaError: the broker could not be reached or read.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        **client_security(settings),
    )
    try:
        await consumer.start()
        partitions = await _partitions(consumer, topic)
        if not partitions:
            named = f" (set by {variable})" if variable else ""
            raise CommandError(f"no topic {topic!r} on {settings.bootstrap}{named}")
        consumer.assign(partitions)
        if from_beginning:
            await consumer.seek_to_beginning(*partitions)
        else:
            await consumer.seek_to_end(*partitions)
        ends = await consumer.end_offsets(partitions)
        while follow or not await _reached(consumer, ends):
            batches = await consumer.getmany(timeout_ms=POLL_MS)
            for partition in sorted(batches, key=lambda tp: tp.partition):
                for record in batches[partition]:
                    yield record
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    await consumer.topics()  # fetches the cluster's metadata
    numbers = consumer.partitions_for_topic(topic) or set()
    return [TopicPartition(topic, number) for number in sorted(numbers)]


async def _reached(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    for partition, end in ends.items():
        if await consumer.position(partition) < end:
            return False
    return True
