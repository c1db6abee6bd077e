"""The scoring agent: consume ``shop.events`` in batches, score, produce outputs.

Per DESIGN.md's measurements Faust's per-record send path and per-key table
writes dominate the cost, so a batch's outputs (recommendations, dead letters
and changelog records) go straight to the producer and are awaited together
before the batch's offsets are acknowledged (at-least-once delivery).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable

import faust

from streams.pipeline import BatchResult, EventPipeline
from streams.records import InputRecord, OutputRecord
from streams.settings import Settings
from streams.topics import Topics

log = logging.getLogger(__name__)


def register_agents(
    app: faust.App,
    *,
    settings: Settings,
    topics: Topics,
    users: faust.Table,
    pipeline: EventPipeline,
) -> None:
    """Attach ``recommend_for_events`` to ``app``."""
    changelog = users.changelog_topic.get_topic_name()

    @app.agent(topics.events, name="recommend_for_events")
    async def recommend_for_events(stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
        store = users.data
        async for events in stream.take_events(settings.batch_max, within=settings.batch_within):
            records = [_input_record(event.message) for event in events]
            result = pipeline.process(records, read_state=store.get)
            await send_all(app.producer, _outputs(result, changelog))
            for user, (_, state) in result.states.items():
                store[user] = state
            yield None


def _input_record(message: faust.types.Message) -> InputRecord:
    return InputRecord(
        key=message.key,
        value=message.value,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        timestamp=message.timestamp,
    )


def _outputs(result: BatchResult, changelog: str) -> list[OutputRecord]:
    states = (
        OutputRecord(topic=changelog, key=user, value=state, partition=partition)
        for user, (partition, state) in result.states.items()
    )
    return [*result.recommendations, *result.dead_letters, *states]


async def send_all(producer: faust.types.ProducerT, outputs: Iterable[OutputRecord]) -> None:
    """Hand every output to the producer, then wait until the broker has them all."""
    pending = [
        await producer.send(out.topic, out.key, out.value, out.partition, None, out.headers or None)
        for out in outputs
    ]
    if pending:
        await asyncio.gather(*pending)
