"""Faust transports whose consumer hands each fetched batch of the input topics to one handler.

Why: Faust passes every record through its per-record path (a ``Message``, the
conductor, a stream queue, a task per record, a per-offset ack), 55-75 µs each,
which capped a worker near 7k events/s before any work (DESIGN.md,
docs/performance.md). Here the records of the batch topics skip that path: the
fetcher hands the whole ``getmany`` result to :class:`BatchRoute`'s handler,
which scores it and returns its delivery. The delivery runs while the next batch
is fetched and scored (one in flight, in order); the offsets of delivered
batches, whose outputs the broker acknowledged, are committed every
``broker_commit_interval`` and before partitions are given up. Faust keeps
everything else: group membership, partition assignment, table recovery,
standbys, changelog records, timers, lifecycle.

The rules that keep every event (docs/reliability.md):

- A batch starts only while the flow is active and the consumer generation is
  the one it was fetched in. A batch that does not start is sought back to its
  first offset on every partition still assigned, so nothing fetched is skipped.
- Deliveries run one at a time, in fetch order; a failed one crashes the worker.
- Revocation and shutdown wait for the delivery in flight and commit
  (:meth:`wait_empty`), so a partition changes hands only after its last batch
  is committed.

The ``kafka-batches://`` (Apache Kafka, :class:`Transport`) and ``tansu://`` (Tansu,
:class:`TansuTransport`) schemes are registered through the ``faust.transports`` entry point.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import aiokafka
import faust
from aiokafka.structs import ConsumerRecord
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP

log = logging.getLogger(__name__)

#: Longest a fetch waits for records; an idle consumer then polls 50 times a second.
FETCH_MAX_WAIT_MS = 20

#: Fetched records of the batch topics, by partition, in offset order.
Fetched = Mapping[TP, Sequence[ConsumerRecord]]
#: Sends a scored batch's outputs and returns once the broker has them all.
Delivery = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class BatchRoute:
    """Which topics skip Faust's per-record path, and the function that scores their batches."""

    topics: frozenset[str]
    handle: Callable[[Fetched], Delivery]


class BatchingApp(faust.App):
    """A ``faust.App`` that may route its batch topics to one handler (:func:`route_batches`)."""

    batch_route: BatchRoute | None = None


def route_batches(
    app: BatchingApp, topic: faust.TopicT, handle: Callable[[Fetched], Delivery]
) -> None:
    """Subscribe ``topic`` and hand each fetched batch of its records to ``handle``."""
    app.batch_route = BatchRoute(topics=frozenset(topic.topics), handle=handle)
    app.topics.add(topic)


class BatchingConsumer(aiokafka_driver.Consumer):
    """Faust's aiokafka consumer; records of the app's batch topics go to its handler in batches."""

    _in_flight: asyncio.Task[None] | None = None
    #: The delivery the newest one queued behind; the next fetch waits for it.
    _behind: asyncio.Task[None] | None = None
    #: ``time.monotonic()`` when the fetch loop last came back, for streams/worker/watchdog.py.
    last_fetch: float | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Offsets of delivered batches not committed yet, and when the last commit was.
        self._delivered: dict[TP, int] = {}
        self._committed_at = time.monotonic()

    async def _wait_next_records(self, timeout: float) -> tuple[Any, Any]:
        await self._make_room()
        generation = self.app.consumer_generation_id
        records, active = await super()._wait_next_records(timeout)
        self.last_fetch = time.monotonic()
        route: BatchRoute | None = getattr(self.app, "batch_route", None)
        if not records or route is None:
            await self._commit_delivered(due_only=True)  # an idle worker commits too
            return records, active
        batch = {tp: rs for tp, rs in records.items() if tp.topic in route.topics}
        if batch:
            await self._run(route, batch, generation)
        return {tp: rs for tp, rs in records.items() if tp not in batch}, active

    async def _make_room(self) -> None:
        """Wait for the delivery the newest one queued behind, before fetching more.

        So at most one scored batch waits behind the one being delivered. The wait
        comes before the fetch, never between it and handing the fetched records
        back: Faust checks those (table changelogs too, during recovery) against the
        group generation it reads after this call returns, so records fetched before
        a rebalance that happened during a wait would be dropped, and table recovery
        would wait for them forever.
        """
        behind, self._behind = self._behind, None
        if behind is not None:
            await asyncio.shield(behind)

    async def _run(self, route: BatchRoute, batch: Fetched, generation: int) -> None:
        """Score ``batch`` and queue its delivery behind the previous one.

        Scoring and queueing happen with no await between them, so :meth:`wait_empty`
        always sees every scored batch; the next fetch waits for the previous
        delivery (:meth:`_make_room`).
        """
        if not self.flow_active or self.app.consumer_generation_id != generation:
            await self._seek_back(batch)
            return
        delivery = route.handle(batch)
        offsets = {tp: records[-1].offset + 1 for tp, records in batch.items()}
        previous = self._in_flight
        self._in_flight = asyncio.ensure_future(self._deliver(previous, delivery, offsets))
        self._behind = previous

    async def _deliver(
        self, previous: asyncio.Task[None] | None, delivery: Delivery, offsets: dict[TP, int]
    ) -> None:
        if previous is not None:
            await previous  # in fetch order: a batch's changelog follows the one before
        try:
            await delivery()
        except Exception as exc:
            log.exception("delivery of a batch failed: the worker stops, its offsets uncommitted")
            await self.crash(exc)
            raise
        self._delivered.update(offsets)
        await self._commit_delivered(due_only=True)

    async def _commit_delivered(self, *, due_only: bool) -> None:
        """Commit the delivered batches' offsets: at once, or once the commit interval is up.

        Committing less often than every batch costs no duplicates: after a crash
        the events since the last commit come again, but the recovered states hold
        their offsets, so they are not answered again (docs/reliability.md).
        """
        now = time.monotonic()
        if not self._delivered or (
            due_only and now - self._committed_at < self.app.conf.broker_commit_interval
        ):
            return
        offsets, self._delivered = self._delivered, {}
        self._committed_at = now
        await self._commit_offsets(offsets)

    async def _seek_back(self, batch: Fetched) -> None:
        """Rewind the partitions still assigned to the batch's first offsets, to fetch it again."""
        assigned = self.assignment()
        for tp, records in batch.items():
            if tp in assigned:
                await self.seek(tp, records[0].offset)
        log.info(
            "batch of %d records fetched across a rebalance: sought back",
            sum(map(len, batch.values())),
        )

    async def wait_empty(self) -> None:
        """Also finish the delivery in flight and commit: revocation and shutdown follow that."""
        task = self._in_flight
        if task is not None and not task.done():
            await asyncio.wait([task])
        await self._commit_delivered(due_only=False)
        await super().wait_empty()


class ShortWaitConsumerThread(aiokafka_driver.AIOKafkaConsumerThread):
    """The aiokafka consumer thread, with the fetch wait lowered before it starts.

    Faust hard-codes ``fetch_max_wait_ms`` at 1,500 ms. Tansu answers a waiting
    fetch only when that runs out, which put the demo's median latency near
    420 ms (docs/operating.md). Apache Kafka answers early, but aiokafka keeps one
    fetch in flight per broker: records arriving for a partition left out of the
    pending fetch waited for it, up to 1.5 s at the end of a burst (p99 1.6 s at
    2,000 events/s, docs/performance.md). An idle consumer now polls 50 times a
    second instead.
    """

    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka hands this to its Fetcher at start(); Faust offers no setting for it.
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


class ShortWaitConsumer(BatchingConsumer):
    """:class:`BatchingConsumer` using :class:`ShortWaitConsumerThread`."""

    def _new_consumer_thread(self) -> ShortWaitConsumerThread:
        return ShortWaitConsumerThread(self, loop=self.loop, beacon=self.beacon)


class IdempotentProducer(aiokafka_driver.Producer):
    """Faust's aiokafka producer with idempotence on (acks=all, sequence numbers).

    Without it a batch the broker wrote but could not acknowledge before it was
    killed is sent again after the restart and written twice: one batch of
    duplicate recommendations (docs/reliability.md, "Broker restart").
    """

    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), "enable_idempotence": True}


class Transport(aiokafka_driver.Transport):
    """Faust's aiokafka transport with :class:`ShortWaitConsumer` and :class:`IdempotentProducer`.

    Registered for ``kafka-batches://`` (Apache Kafka).
    """

    Consumer: ClassVar[type[aiokafka_driver.Consumer]] = ShortWaitConsumer
    Producer: ClassVar[type[aiokafka_driver.Producer]] = IdempotentProducer


class TansuTransport(Transport):
    """:class:`Transport` with Faust's stock producer, for ``tansu://`` (the embedded broker).

    Tansu has no transactions and keeps everything in memory until it restarts, so a
    restart loses its data anyway: the idempotent producer would buy nothing there.
    """

    Producer: ClassVar[type[aiokafka_driver.Producer]] = aiokafka_driver.Producer
