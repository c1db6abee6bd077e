"""The batching consumer's rules (streams/kafka/transport.py), without a broker.

The consumer is built with ``object.__new__`` and given only what its batch path
reads; the process boundaries (seeking, committing, crashing, the assignment, the
app's generation and commit interval, and Faust's own fetch and drain) are mocks
with ``spec_set``. Each test checks what reached them: which offsets were
committed or sought, and in which order the deliveries ran.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from unittest import mock

import faust
import pytest
from aiokafka.structs import ConsumerRecord
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP

from streams.kafka.transport import (
    BatchingApp,
    BatchingConsumer,
    BatchRoute,
    Delivery,
    Fetched,
    TansuTransport,
    Transport,
)

TOPIC = "shop.events"
P0, P1, P2 = (TP(TOPIC, partition) for partition in range(3))
#: A topic Faust's per-record path keeps (a table's changelog, say).
OTHER = TP("shop.other", 0)
GENERATION = 7
#: ``broker_commit_interval`` in seconds; the tests move the last commit instead of the clock.
INTERVAL = 60.0


class DeliveryFailed(Exception):
    """The broker did not acknowledge a batch's outputs."""


def records(tp: TP, first: int, count: int) -> list[ConsumerRecord[bytes, bytes]]:
    """``count`` consecutive records of ``tp`` from offset ``first``."""
    return [
        ConsumerRecord(
            topic=tp.topic,
            partition=tp.partition,
            offset=offset,
            timestamp=0,
            timestamp_type=0,
            key=None,
            value=b"{}",
            checksum=None,
            serialized_key_size=0,
            serialized_value_size=2,
            headers=(),
        )
        for offset in range(first, first + count)
    ]


class Handler:
    """The route's handler: numbers the batches it scores (1, 2, ...) and logs each delivery's
    start and end. A delivery with a gate waits for it; a failing one raises."""

    def __init__(self) -> None:
        self.scored: list[Fetched] = []
        self.log: list[str] = []
        self.gates: dict[int, asyncio.Event] = {}
        self.failing: set[int] = set()
        self.route = BatchRoute(topics=frozenset({TOPIC}), handle=self.handle)

    def gate(self, batch: int) -> asyncio.Event:
        """Hold batch ``batch``'s delivery until the returned event is set."""
        return self.gates.setdefault(batch, asyncio.Event())

    def handle(self, batch: Fetched) -> Delivery:
        self.scored.append(batch)
        number = len(self.scored)

        async def deliver() -> None:
            self.log.append(f"start {number}")
            if number in self.gates:
                await self.gates[number].wait()
            if number in self.failing:
                raise DeliveryFailed(f"batch {number}")
            self.log.append(f"end {number}")

        return deliver


@pytest.fixture
def handler() -> Handler:
    return Handler()


@dataclass(frozen=True)
class Boundaries:
    """The consumer's process boundaries, mocked (autospec, ``spec_set``)."""

    seek: Any
    commit: Any
    crash: Any
    assignment: Any

    def commits(self) -> list[dict[TP, int]]:
        """The offsets committed, commit by commit."""
        return [call.args[0] for call in self.commit.await_args_list]


@pytest.fixture
def consumer(handler: Handler) -> BatchingConsumer:
    """A consumer in generation ``GENERATION`` with flow active, whose last commit was just now."""
    consumer = object.__new__(BatchingConsumer)
    app = mock.create_autospec(BatchingApp, instance=True, spec_set=True)
    app.consumer_generation_id = GENERATION
    app.conf = mock.create_autospec(faust.Settings, instance=True, spec_set=True)
    app.conf.broker_commit_interval = INTERVAL
    app.batch_route = handler.route
    consumer.app = app
    consumer.flow_active = True
    consumer._delivered = {}
    consumer._committed_at = time.monotonic()
    return consumer


@pytest.fixture(autouse=True)
def boundaries(consumer: BatchingConsumer) -> Iterator[Boundaries]:
    """``consumer``'s seek, commit, crash and assignment (P0-P2 assigned) as mocks, in every
    test: no test reaches a real one."""

    def patch(name: str, **options: object) -> Any:
        return mock.patch.object(consumer, name, autospec=True, spec_set=True, **options)

    with (
        patch("seek") as seek,
        patch("_commit_offsets", return_value=True) as commit,
        patch("crash") as crash,
        patch("assignment", return_value={P0, P1, P2}) as assignment,
    ):
        yield Boundaries(seek=seek, commit=commit, crash=crash, assignment=assignment)


@pytest.fixture
def faust_drain() -> Iterator[Any]:
    """Faust's own ``wait_empty`` (acks of its per-record path), which ours ends with."""
    with mock.patch.object(aiokafka_driver.Consumer, "wait_empty", autospec=True) as drain:
        yield drain


def fetching(consumer: BatchingConsumer, fetched: dict[TP, Any], *, rebalance: bool = False) -> Any:
    """Faust's fetch, returning ``fetched``; with ``rebalance`` the group's generation moves on
    while it waits, as a rebalance in the middle of a fetch does."""

    async def fetch(self: BatchingConsumer, timeout: float) -> tuple[dict[TP, Any], set[TP]]:
        if rebalance:
            consumer.app.consumer_generation_id += 1
        return fetched, {P0, P1, P2, OTHER}

    return mock.patch.object(
        aiokafka_driver.Consumer, "_wait_next_records", autospec=True, side_effect=fetch
    )


async def settle() -> None:
    """Let every task that can run, run."""
    for _ in range(20):
        await asyncio.sleep(0)


# Deliveries run one at a time, in fetch order.


async def test_deliveries_run_one_at_a_time_in_fetch_order(
    consumer: BatchingConsumer, handler: Handler
) -> None:
    first = handler.gate(1)  # batch 1's delivery is slow; batch 2's would be over at once
    await consumer._run(handler.route, {P0: records(P0, 0, 3)}, GENERATION)
    await consumer._run(handler.route, {P1: records(P1, 0, 2)}, GENERATION)
    with fetching(consumer, {P2: records(P2, 0, 1)}) as fetch:
        third = asyncio.create_task(consumer._wait_next_records(0.1))
        await settle()
        assert handler.log == ["start 1"]  # batch 2 is scored, but its delivery waits
        assert len(handler.scored) == 2
        fetch.assert_not_called()  # and the next fetch waits too: one batch queued at most

        first.set()
        await third
    assert len(handler.scored) == 3
    assert consumer._in_flight is not None
    await consumer._in_flight
    assert handler.log == ["start 1", "end 1", "start 2", "end 2", "start 3", "end 3"]


async def test_fetched_records_go_back_to_faust_at_once_while_a_delivery_is_under_way(
    consumer: BatchingConsumer, handler: Handler
) -> None:
    """Faust checks them against the group generation it reads after the call returns:
    a wait in between that spanned a rebalance dropped table changelog records, and
    the table's recovery then waited for them forever."""
    delivering = handler.gate(1)
    await consumer._run(handler.route, {P0: records(P0, 0, 3)}, GENERATION)
    changelog = records(OTHER, 0, 2)
    with fetching(consumer, {P1: records(P1, 0, 2), OTHER: changelog}):
        call = asyncio.create_task(consumer._wait_next_records(0.1))
        await settle()
        returned_at_once = call.done()
        delivering.set()
        returned, _ = await call
    assert returned_at_once  # while batch 1 was still on its way
    assert returned == {OTHER: changelog} and len(handler.scored) == 2


async def test_only_the_batch_topics_go_to_the_handler_the_rest_back_to_faust(
    consumer: BatchingConsumer, handler: Handler
) -> None:
    batch, other = {P0: records(P0, 5, 2), P1: records(P1, 9, 1)}, records(OTHER, 0, 4)
    with fetching(consumer, {**batch, OTHER: other}):
        kept, _ = await consumer._wait_next_records(1.0)
    assert kept == {OTHER: other}
    assert handler.scored == [batch]
    assert consumer.last_fetch is not None


# A batch that may not start is sought back, on the partitions still assigned.


async def test_a_batch_from_an_older_generation_is_sought_back_not_handled(
    consumer: BatchingConsumer, handler: Handler, boundaries: Boundaries
) -> None:
    consumer.app.consumer_generation_id = GENERATION + 1  # the group rebalanced since the fetch
    boundaries.assignment.return_value = {P0, P2}  # P1 went away
    batch = {P0: records(P0, 10, 3), P1: records(P1, 40, 2), P2: records(P2, 7, 1)}
    await consumer._run(handler.route, batch, GENERATION)
    assert handler.scored == [] and handler.log == []
    assert boundaries.seek.await_args_list == [mock.call(P0, 10), mock.call(P2, 7)]
    assert consumer._in_flight is None
    boundaries.commit.assert_not_awaited()


async def test_a_batch_fetched_while_the_flow_is_stopped_is_sought_back_not_handled(
    consumer: BatchingConsumer, handler: Handler, boundaries: Boundaries
) -> None:
    consumer.flow_active = False  # a rebalance is under way
    boundaries.assignment.return_value = {P1}
    batch = {P0: records(P0, 3, 2), P1: records(P1, 12, 5)}
    await consumer._run(handler.route, batch, GENERATION)
    assert handler.scored == [] and handler.log == []
    assert boundaries.seek.await_args_list == [mock.call(P1, 12)]
    boundaries.commit.assert_not_awaited()


async def test_a_rebalance_during_the_fetch_sends_the_batch_back_and_keeps_the_rest(
    consumer: BatchingConsumer, handler: Handler, boundaries: Boundaries
) -> None:
    # The generation is read before the fetch: one that moves on while it waits counts.
    other = records(OTHER, 0, 2)
    with fetching(consumer, {P0: records(P0, 20, 4), OTHER: other}, rebalance=True):
        kept, _ = await consumer._wait_next_records(1.0)
    assert kept == {OTHER: other}
    assert handler.scored == []
    assert boundaries.seek.await_args_list == [mock.call(P0, 20)]


# Offsets are committed after delivery, every commit interval, or at once in wait_empty.


async def test_offsets_are_committed_only_once_the_delivery_succeeded(
    consumer: BatchingConsumer, handler: Handler, boundaries: Boundaries
) -> None:
    consumer._committed_at -= INTERVAL + 1  # a commit is due
    delivered = handler.gate(1)
    await consumer._run(handler.route, {P0: records(P0, 10, 3), P1: records(P1, 40, 2)}, GENERATION)
    await settle()
    assert handler.log == ["start 1"]
    assert boundaries.commits() == []  # the broker has not acknowledged the outputs yet

    delivered.set()
    assert consumer._in_flight is not None
    await consumer._in_flight
    assert boundaries.commits() == [{P0: 13, P1: 42}]  # the next offset to read, per partition


async def test_commits_are_no_more_frequent_than_the_interval_unless_wait_empty_forces_one(
    consumer: BatchingConsumer, handler: Handler, boundaries: Boundaries, faust_drain: Any
) -> None:
    consumer._committed_at -= INTERVAL + 1  # a commit is due
    for batch in (
        {P0: records(P0, 0, 5)},
        {P0: records(P0, 5, 5), P1: records(P1, 0, 1)},
        {P0: records(P0, 10, 2)},
    ):
        await consumer._run(handler.route, batch, GENERATION)
        assert consumer._in_flight is not None
        await consumer._in_flight
    assert handler.log == ["start 1", "end 1", "start 2", "end 2", "start 3", "end 3"]
    assert boundaries.commits() == [{P0: 5}]  # batches 2 and 3 came within the interval

    await consumer.wait_empty()  # revocation or shutdown: commit now
    assert boundaries.commits() == [{P0: 5}, {P0: 12, P1: 1}]
    faust_drain.assert_awaited_once_with(consumer)


async def test_an_idle_fetch_commits_once_the_interval_is_up(
    consumer: BatchingConsumer, handler: Handler, boundaries: Boundaries
) -> None:
    await consumer._run(handler.route, {P2: records(P2, 0, 2)}, GENERATION)
    assert consumer._in_flight is not None
    await consumer._in_flight
    with fetching(consumer, {}):
        await consumer._wait_next_records(1.0)
        assert boundaries.commits() == []  # delivered, but the interval is not up
        consumer._committed_at -= INTERVAL + 1
        await consumer._wait_next_records(1.0)
    assert boundaries.commits() == [{P2: 2}]


async def test_wait_empty_finishes_the_delivery_in_flight_before_it_commits(
    consumer: BatchingConsumer, handler: Handler, boundaries: Boundaries, faust_drain: Any
) -> None:
    delivered = handler.gate(1)
    await consumer._run(handler.route, {P0: records(P0, 0, 4)}, GENERATION)
    waiting = asyncio.create_task(consumer.wait_empty())
    await settle()
    assert not waiting.done() and boundaries.commits() == []
    faust_drain.assert_not_awaited()

    delivered.set()
    await waiting
    assert handler.log == ["start 1", "end 1"]
    assert boundaries.commits() == [{P0: 4}]  # partitions change hands only after this
    faust_drain.assert_awaited_once_with(consumer)


async def test_a_failed_delivery_crashes_the_consumer_and_commits_nothing_of_it(
    consumer: BatchingConsumer, handler: Handler, boundaries: Boundaries, faust_drain: Any
) -> None:
    handler.failing.add(2)
    await consumer._run(handler.route, {P0: records(P0, 0, 3)}, GENERATION)
    await consumer._run(handler.route, {P0: records(P0, 3, 3), P1: records(P1, 0, 2)}, GENERATION)
    await consumer._run(handler.route, {P0: records(P0, 6, 1)}, GENERATION)
    with fetching(consumer, {P0: records(P0, 7, 1)}) as fetch:
        with pytest.raises(DeliveryFailed):  # the fetch loop, before its next fetch, sees it
            await consumer._wait_next_records(0.1)
        fetch.assert_not_called()
    assert consumer._in_flight is not None
    with pytest.raises(DeliveryFailed):  # batch 3 waited on batch 2, so it fails unsent
        await consumer._in_flight

    assert handler.log == ["start 1", "end 1", "start 2"]
    boundaries.crash.assert_awaited_once()
    [reason] = boundaries.crash.await_args.args
    assert isinstance(reason, DeliveryFailed) and str(reason) == "batch 2"
    await consumer.wait_empty()
    assert boundaries.commits() == [{P0: 3}]  # batch 1 only: nothing of batches 2 and 3


def test_a_batch_retried_after_a_broker_crash_is_not_written_twice_on_apache_kafka() -> None:
    """Regression: a broker killed before acknowledging a written batch got it twice.

    The Apache Kafka transport's producer is idempotent (the broker drops the retry by
    its sequence number); Tansu's, which cannot keep anything across a restart, is stock.
    """
    app = faust.App("idempotence-test", broker="kafka-batches://127.0.0.1:1")
    kafka = Transport("kafka-batches://127.0.0.1:1", app).Producer(app.transport)
    tansu = TansuTransport("tansu://127.0.0.1:1", app).Producer(app.transport)
    assert kafka._settings_extra()["enable_idempotence"] is True
    assert "enable_idempotence" not in tansu._settings_extra()
