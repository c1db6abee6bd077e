"""The worker's batch handler: each fetched batch of the input topics through the pipeline.

Not a Faust agent on purpose: Faust's per-record path costs more than all of the
pipeline's work (DESIGN.md's measurements), so the records arrive as whole fetched
batches (streams/kafka/transport.py), and a batch's
outputs (recommendations, dead letters and changelog records) go straight to
the producer and are awaited together before the consumer commits the batch's
offsets (at-least-once delivery, docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiokafka.errors import KafkaError
from faust.types import TP

from streams.http.latest import LatestLists
from streams.kafka.consumed import input_records
from streams.kafka.produce import kafka_producer, send_all
from streams.kafka.tables import WorkerTables, reader, write_changes
from streams.kafka.topics import Topics
from streams.kafka.transport import BatchingApp, Delivery, Fetched, route_batches
from streams.metrics.worker import WorkerMetrics
from streams.pipeline.batch import BatchResult, EventPipeline
from streams.pipeline.monitor import ProbationFailure
from streams.pipeline.records import OutputRecord
from streams.settings import Settings
from streams.worker.shredding import SegmentRoller

log = logging.getLogger(__name__)

#: Seconds between refreshes of the lag gauge when no batch refreshes it.
LAG_REFRESH_SECONDS = 5.0


def register_handler(
    app: BatchingApp,
    *,
    settings: Settings,
    topics: Topics,
    tables: WorkerTables,
    pipeline: EventPipeline,
    metrics: WorkerMetrics,
    record_failure: Callable[[ProbationFailure], None],
    roller: SegmentRoller,
    latest: LatestLists,
) -> None:
    """Route the fetched batches of the input topics to ``recommend_for_events``.

    ``record_failure`` writes a probation failure to the model store; it runs in a
    thread during the batch's delivery, never inside the pipeline. ``latest`` gets
    each batch's lists (and loses an erased user's) as soon as the batch is
    scored, and loses a partition's lists when the partition is given away.
    """
    changelogs = tables.changelogs()
    isolate_tails = settings.broker_kind == "tansu"
    inputs = {settings.events_topic, settings.privacy_requests_topic}
    #: Next offset to process per input partition, for the lag gauge.
    positions: dict[tuple[str, int], int] = {}
    #: End offsets asked of the broker: a busy worker fetches seldom, and the end its
    #: fetches saw would make the lag a saw-tooth that hides a growing backlog.
    ends: dict[TP, int] = {}

    def owned() -> list[TP]:
        return [tp for tp in app.consumer.assignment() if tp.topic in inputs]

    def lag() -> dict[tuple[str, int], int]:
        """Events left in each input partition this worker owns (and has read from)."""
        return {
            (tp.topic, tp.partition): max(
                0,
                max(ends.get(tp, 0), app.consumer.highwater(tp) or 0)
                - positions[(tp.topic, tp.partition)],
            )
            for tp in owned()
            if (tp.topic, tp.partition) in positions
        }

    async def forget_revoked_lists(sender: object, revoked: set[TP], **_: object) -> None:
        """A partition given away: its lists would go stale here while another worker answers."""
        latest.drop_partitions({tp.partition for tp in revoked if tp.topic in inputs})

    app.on_partitions_revoked.connect(forget_revoked_lists)

    @app.timer(LAG_REFRESH_SECONDS)
    async def refresh_lag() -> None:
        """Also while no batch comes: a stalled agent's lag grows, given-away partitions go."""
        partitions = owned()
        try:
            fresh = await app.consumer.highwaters(*partitions) if partitions else {}
        except KafkaError as exc:  # the fetched ends stand in until the broker answers
            log.debug("could not read the end offsets: %s", exc)
        else:
            ends.clear()
            ends.update(fresh)
        metrics.set_lag(lag())

    def recommend_for_events(fetched: Fetched) -> Delivery:
        """Score one fetched batch now; the returned delivery sends its waves in order.

        The tables are updated at once, so the next batch is scored on them while
        this one is still being delivered: the consumer commits only after the
        delivery, and a failed delivery stops the worker, so memory never gets
        ahead of what the broker holds for longer than the worker lives.
        """
        records = input_records(fetched.values())
        started = time.perf_counter()
        pipeline.shared.note_released(tables.release_marks())
        result = pipeline.process(
            records, read_state=reader(tables.users), read_key=reader(tables.keys)
        )
        seconds = time.perf_counter() - started
        write_changes(tables.users, result.changes.states)
        write_changes(tables.keys, result.changes.keys)
        write_changes(tables.releases, _encoded_marks(result.release_marks))
        roller.note(result.changes.erased_partitions)
        latest.update(result.latest)
        for tp, batch in fetched.items():
            positions[(tp.topic, tp.partition)] = batch[-1].offset + 1
        metrics.record_batch(result.stats, seconds=seconds)
        metrics.set_lag(lag())
        waves = _waves(result, changelogs, isolate_tails=isolate_tails)
        failures = result.probation_failures

        async def deliver() -> None:
            producer = kafka_producer(app)
            for wave in waves:
                await send_all(producer, wave)
            for failure in failures:
                await asyncio.to_thread(record_failure, failure)

        return deliver

    route_batches(app, topics.inputs, recommend_for_events)


def _encoded_marks(marks: dict[int, float]) -> dict[bytes, tuple[int, bytes | None]]:
    """Release marks as ``shared_releases`` table changes, each on its own partition."""
    return {str(p).encode(): (p, repr(before).encode()) for p, before in marks.items()}


def _waves(
    result: BatchResult, changelogs: tuple[str, str, str], *, isolate_tails: bool
) -> list[list[OutputRecord]]:
    """The batch's records in the order they must reach the broker, each wave acknowledged first.

    0. When the batch released a privacy window, its release marks: durable before
    anything learned from the release leaves the worker, so a crash cannot release
    the window again with fresh noise. 1. Recommendations, the sponsored items' spend
    records, dead letters and audit records: a charge is durable before the commit,
    so none is lost (a batch redelivered before its changelog was acknowledged is
    answered, and charged, twice). 2. The changelog records:
    a state holding an event's offset then proves its recommendation was
    delivered, so a redelivered event is not answered twice (``EventPipeline``).
    3. With ``isolate_tails`` (Tansu), the last changelog record of each changelog
    partition, held back so it travels alone: Tansu reports a partition's end
    offset as the base offset of its last producer batch + 1, so Faust's changelog
    recovery would stop before the rest of that batch and lose table updates.
    """
    users, keys, releases = changelogs
    marks = [
        OutputRecord(topic=releases, key=key, value=value, partition=partition)
        for key, (partition, value) in _encoded_marks(result.release_marks).items()
    ]
    changes = (result.changes.states, result.changes.keys)
    table_records = [
        OutputRecord(topic=topic, key=user, value=value, partition=partition)
        for topic, table in zip((users, keys), changes, strict=True)
        for user, (partition, value) in table.items()
    ]
    outputs = [*result.recommendations, *result.ad_spend, *result.dead_letters, *result.audit]
    first = [marks] if marks else []
    if not isolate_tails:
        return [*first, outputs, table_records]
    last = {(r.topic, r.partition): index for index, r in enumerate(table_records)}
    held = set(last.values())
    tails = [table_records[index] for index in sorted(held)]
    body = [record for index, record in enumerate(table_records) if index not in held]
    return [*first, outputs, body, tails]
