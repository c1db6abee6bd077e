"""EventProducer: the worker's validation before sending, keys, delivery futures and reports.

kafka-python's producer (the process boundary) is a spec'd fake whose futures the
tests settle, as the broker's answers would.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from unittest.mock import create_autospec

import orjson
import pytest
from kafka import KafkaProducer
from kafka.errors import KafkaTimeoutError, NotEnoughReplicasError
from kafka.future import Future as KafkaFuture
from kafka.producer.future import RecordMetadata

import streams.client.producer as producer_module
from streams.client import DeliveryError, EventProducer, InvalidEventError
from streams.errors import IntentstreamError
from streams.pipeline.validation import Reason
from streams.settings import Settings

NOW = 1_700_000_000.0
SETTINGS = Settings(
    kafka="fake:9092",
    broker_kind="kafka",
    events_topic="t.events",
    privacy_requests_topic="t.requests",
    max_event_bytes=1024,
)
VIEW = {"event_id": "e1", "user_id": "u1", "ts": NOW, "type": "view", "item_id": "i1"}


@dataclass
class FakeKafka:
    """A spec'd kafka-python producer, the futures of its sends and its constructor's options."""

    producer: Any
    futures: list[KafkaFuture] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def send(self) -> Any:
        return self.producer.send

    def build(self, **options: Any) -> Any:
        self.options = options
        return self.producer


@pytest.fixture
def kafka(monkeypatch: pytest.MonkeyPatch) -> FakeKafka:
    """The fake that every EventProducer of the test gets as its kafka-python producer."""
    fake = FakeKafka(create_autospec(KafkaProducer, instance=True, spec_set=True))

    def send(topic: str, *, value: bytes, key: bytes) -> KafkaFuture:
        fake.futures.append(KafkaFuture())
        return fake.futures[-1]

    fake.producer.send.side_effect = send
    monkeypatch.setattr(producer_module, "KafkaProducer", fake.build)
    return fake


@pytest.fixture
def make_producer(kafka: FakeKafka) -> Callable[..., EventProducer]:
    """``make_producer(**options)``: an EventProducer on the fake, its clock at ``NOW``."""

    def make(**options: Any) -> EventProducer:
        return EventProducer(SETTINGS, clock=lambda: NOW, **options)

    return make


def acknowledge(future: KafkaFuture, partition: int, offset: int) -> None:
    future.success(RecordMetadata("t.events", partition, None, offset, 0, None, 0, 0, 0))


BAD_EVENTS = [
    (VIEW | {"item_id": None}, Reason.WRONG_TYPE, "item_id"),
    ({k: v for k, v in VIEW.items() if k != "item_id"}, Reason.MISSING_FIELD, "item_id"),
    ({k: v for k, v in VIEW.items() if k != "event_id"}, Reason.MISSING_FIELD, "event_id"),
    (VIEW | {"type": "search"}, Reason.MISSING_FIELD, "query"),
    (VIEW | {"type": "teleport"}, Reason.UNKNOWN_EVENT_TYPE, "type"),
    (VIEW | {"user_id": 42}, Reason.WRONG_TYPE, "user_id"),
    (VIEW | {"user_id": ""}, Reason.INVALID_VALUE, "user_id"),
    (VIEW | {"price": -1.0}, Reason.INVALID_VALUE, "price"),
    (VIEW | {"ts": NOW * 1000}, Reason.BAD_TIMESTAMP, "ts"),
    (VIEW | {"ts": NOW + 3600}, Reason.BAD_TIMESTAMP, "ahead"),
    (VIEW | {"ts": "yesterday"}, Reason.WRONG_TYPE, "ts"),
    (VIEW | {"pad": "x" * 2000}, Reason.TOO_LARGE, "limit 1024"),
    (VIEW | {"seen": {1, 2}}, Reason.INVALID_JSON, "cannot be encoded"),
    (VIEW | {"user_id": "u\udc80"}, Reason.INVALID_JSON, "cannot be encoded"),
]


@pytest.mark.parametrize(("event", "reason", "detail"), BAD_EVENTS)
def test_an_event_the_worker_would_reject_raises_with_its_reason_and_is_not_sent(
    make_producer: Callable[..., EventProducer],
    kafka: FakeKafka,
    event: dict[str, Any],
    reason: Reason,
    detail: str,
) -> None:
    producer = make_producer()
    with pytest.raises(InvalidEventError) as raised:
        producer.send(event)
    assert raised.value.reason is reason
    assert detail in raised.value.detail
    assert isinstance(raised.value, IntentstreamError)
    kafka.send.assert_not_called()
    assert producer.flush().sent == 0


def test_a_valid_event_is_keyed_by_its_user_and_sent_as_validated(
    make_producer: Callable[..., EventProducer], kafka: FakeKafka
) -> None:
    producer = make_producer(linger_ms=20, batch_size=32_768)
    search = {"event_id": "e2", "user_id": "zoë", "ts": NOW + 299, "type": "search",
              "query": "zapatos", "extra": {"kept": True}}  # fmt: skip
    producer.send(search)
    (call,) = kafka.send.call_args_list
    assert call.args == ("t.events",)
    assert call.kwargs["key"] == "zoë".encode()
    assert orjson.loads(call.kwargs["value"]) == search
    options = kafka.options
    assert (options["linger_ms"], options["batch_size"]) == (20, 32_768)
    assert (options["acks"], options["enable_idempotence"]) == ("all", True)


def test_futures_and_the_flush_report_count_every_outcome(
    make_producer: Callable[..., EventProducer], kafka: FakeKafka
) -> None:
    producer = make_producer()
    delivered = [producer.send(VIEW | {"event_id": f"e{n}"}) for n in range(4)]
    acknowledge(kafka.futures[0], 2, 10)
    acknowledge(kafka.futures[1], 2, 11)
    kafka.futures[2].failure(NotEnoughReplicasError("1 of 3 in sync"))

    report = producer.flush()

    assert (report.sent, report.pending, report.ok) == (2, 1, False)
    (failure,) = report.failed
    assert (failure.topic, failure.record_id, failure.message) == (
        "t.events",
        "e2",
        VIEW | {"event_id": "e2"},
    )
    assert failure.reason.startswith("NotEnoughReplicasError")
    assert delivered[1].result().partition == 2
    assert delivered[1].result().offset == 11
    with pytest.raises(DeliveryError, match="e2 was not delivered") as failed:
        delivered[2].result()
    assert isinstance(failed.value.__cause__, NotEnoughReplicasError)
    assert not delivered[3].done()

    acknowledge(kafka.futures[3], 0, 5)  # the pending one lands in the next report
    assert producer.flush() == type(report)(sent=1, failed=(), pending=0)


def test_a_send_that_fails_at_once_is_reported_not_raised(
    make_producer: Callable[..., EventProducer], kafka: FakeKafka
) -> None:
    producer = make_producer()
    kafka.producer.send.side_effect = KafkaTimeoutError("no metadata for t.events after 60 s")
    delivery = producer.send(VIEW)
    assert isinstance(delivery.exception(), DeliveryError)
    report = producer.flush()
    assert (report.sent, len(report.failed)) == (0, 1)
    assert "KafkaTimeoutError" in report.failed[0].reason


def test_a_flush_that_times_out_reports_the_records_still_pending(
    make_producer: Callable[..., EventProducer], kafka: FakeKafka
) -> None:
    producer = make_producer()
    producer.send(VIEW)
    kafka.producer.flush.side_effect = KafkaTimeoutError("not flushed in 0.1 s")
    assert producer.flush(timeout=0.1).pending == 1


def test_leaving_the_block_raises_for_failures_not_yet_reported(
    make_producer: Callable[..., EventProducer], kafka: FakeKafka
) -> None:
    with pytest.raises(DeliveryError, match="1 failed") as raised, make_producer() as producer:
        producer.send(VIEW)
        kafka.futures[0].failure(NotEnoughReplicasError())
    assert raised.value.report is not None
    assert raised.value.report.failed[0].record_id == "e1"
    kafka.producer.close.assert_called_once()

    with make_producer() as reported:  # a failure already reported by flush does not raise
        reported.send(VIEW)
        kafka.futures[1].failure(NotEnoughReplicasError())
        assert not reported.flush().ok


def test_erase_sends_a_request_keyed_by_the_user_on_the_requests_topic(
    make_producer: Callable[..., EventProducer], kafka: FakeKafka
) -> None:
    producer = make_producer()
    producer.erase("u1", request_id="r-1")
    generated = producer.erase("u2")
    first, second = kafka.send.call_args_list
    assert first.args == ("t.requests",)
    assert first.kwargs["key"] == b"u1"
    assert orjson.loads(first.kwargs["value"]) == {
        "action": "erase",
        "request_id": "r-1",
        "user_id": "u1",
    }
    request_id = orjson.loads(second.kwargs["value"])["request_id"]
    assert request_id.startswith("erase-")
    acknowledge(kafka.futures[1], 1, 0)
    assert generated.result().record_id == request_id


@pytest.mark.parametrize(
    ("user_id", "request_id", "reason"),
    [
        ("", None, Reason.INVALID_VALUE),
        ("u" * 257, None, Reason.INVALID_VALUE),
        (7, None, Reason.WRONG_TYPE),
        ("u1", "", Reason.INVALID_VALUE),
    ],
)
def test_an_erasure_the_worker_would_reject_raises_and_is_not_sent(
    make_producer: Callable[..., EventProducer],
    kafka: FakeKafka,
    user_id: Any,
    request_id: str | None,
    reason: Reason,
) -> None:
    with pytest.raises(InvalidEventError) as raised:
        make_producer().erase(user_id, request_id=request_id)
    assert raised.value.reason is reason
    kafka.send.assert_not_called()


def test_tansu_gets_no_idempotent_producer_and_a_closed_producer_refuses_records(
    kafka: FakeKafka,
) -> None:
    producer = EventProducer(SETTINGS.model_copy(update={"broker_kind": "tansu"}))
    assert kafka.options["enable_idempotence"] is False
    producer.close()
    with pytest.raises(IntentstreamError, match="closed"):
        producer.send(VIEW)
