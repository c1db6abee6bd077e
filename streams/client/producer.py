"""Send shoppers' events and erasure requests, checked as the worker checks them.

Usage from a shop's script (docs/producing.md)::

    from streams.client import EventProducer
    from streams.settings import Settings

    with EventProducer(Settings()) as producer:
        producer.send({"event_id": "e1", "user_id": "u123", "ts": 1700000000.1,
                       "type": "view", "item_id": "i42"})
        report = producer.flush()
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any

import orjson
from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError

from streams.client.closing import ClosedOnExit
from streams.client.connection import connect, producer_options
from streams.client.delivery import Delivered, DeliveryReport, DeliveryTally
from streams.client.errors import ClientError, InvalidEventError
from streams.client.partitioner import JavaPartitioner, user_key
from streams.pipeline.validation import InputValidation, Reason, Rejection
from streams.settings import Settings

log = logging.getLogger(__name__)

#: Default wait for more records before a batch goes (milliseconds).
LINGER_MS = 5
#: Default most bytes of one partition's batch.
BATCH_BYTES = 64 * 1024


class EventProducer(ClosedOnExit):
    """Produces events to ``settings.events_topic`` and erasure requests, keyed by user.

    Each record is checked with the worker's own validation (schema, size, ``ts``
    not too far ahead) before it is handed to the producer: a record the worker
    would dead-letter raises :class:`InvalidEventError` and is not sent. Records are
    keyed by the raw user id (UTF-8) and partitioned as the Java client does, so
    a user's events and requests reach the worker that owns the user. They go in
    batches (``linger_ms``, ``batch_size``); each :meth:`send` returns a future of
    its delivery, and :meth:`flush` reports every record sent since the previous
    report. The connection honours the settings' TLS and SASL options.

    The futures are settled, and their callbacks run, on the producer's I/O thread.
    Leaving the ``with`` block flushes, closes, and raises :class:`DeliveryError`
    if a record was not delivered and not yet reported.

    Args:
        settings: Broker address, security, topic names and the worker's limits
            (``max_event_bytes``, ``ts_future_tolerance_seconds``).
        linger_ms: How long a batch waits for more records before it goes.
        batch_size: Most bytes of one partition's batch.
        clock: Seconds since the epoch; ``ts`` is checked against it as the worker
            checks it against the broker's timestamp.

    Raises:
        BrokerError: The cluster cannot be reached or refused the login.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        linger_ms: int = LINGER_MS,
        batch_size: int = BATCH_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._validate = InputValidation(
            events_topic=settings.events_topic,
            requests_topic=settings.privacy_requests_topic,
            max_bytes=settings.max_event_bytes,
            future_seconds=settings.ts_future_tolerance_seconds,
        )
        self._tally = DeliveryTally()
        self._closed = False
        self._producer = connect(
            settings,
            "producer",
            lambda: KafkaProducer(
                **producer_options(settings),
                client_id="intentstream-client",
                linger_ms=linger_ms,
                batch_size=batch_size,
                partitioner=JavaPartitioner(),
            ),
        )

    def send(self, event: Mapping[str, Any]) -> Future[Delivered]:
        """Check one event and hand it to the producer, keyed by its ``user_id``.

        Args:
            event: The event (docs/producing.md); unknown fields are kept.

        Returns:
            Its delivery: the partition and offset once the broker acknowledged it, or
            :class:`DeliveryError` (also in the next :meth:`flush` report).

        Raises:
            InvalidEventError: The worker would dead-letter it; nothing was sent.
            ClientError: The producer is closed.
        """
        topic = self._settings.events_topic
        key, value, checked = self._check(topic, event)
        return self._produce(topic, key, value, checked, checked["event_id"])

    def erase(self, user_id: str, *, request_id: str | None = None) -> Future[Delivered]:
        """Ask the workers to forget ``user_id``: an erasure request, keyed by the user.

        It applies to every event of the user the broker stamped at or before it
        (docs/privacy.md); send it after the events it must cover were acknowledged.

        Args:
            user_id: The raw user id, as in the user's events.
            request_id: Names the request in its audit record; default: a new
                ``erase-<uuid4>``, in the delivery's ``record_id``.

        Returns:
            Its delivery, as :meth:`send`'s.

        Raises:
            InvalidEventError: The request would be dead-lettered (an empty or
                over-long user id, an empty request id); nothing was sent.
            ClientError: The producer is closed.
        """
        request = {
            "action": "erase",
            "request_id": f"erase-{uuid.uuid4()}" if request_id is None else request_id,
            "user_id": user_id,
        }
        topic = self._settings.privacy_requests_topic
        key, value, checked = self._check(topic, request)
        return self._produce(topic, key, value, checked, checked["request_id"])

    def flush(self, timeout: float | None = None) -> DeliveryReport:
        """Send every buffered record now and wait for the broker's answers.

        Args:
            timeout: Most seconds to wait; ``None`` = until every record is settled
                (at most the producer's delivery timeout, 120 s, each).

        Returns:
            Every record sent since the previous report: acknowledged, failed with
            the reason, or (after ``timeout``) still pending, to be in the next one.
        """
        try:
            self._producer.flush(timeout)
        except KafkaTimeoutError:
            log.warning("flush gave up after %s s; records still pending", timeout)
        return self._tally.report()

    def close(self, timeout: float | None = None) -> DeliveryReport:
        """Deliver what is buffered, then close; returns the last report.

        After ``timeout`` seconds the records still unacknowledged fail (reported).
        Closing again returns an empty report.
        """
        if not self._closed:
            self._closed = True
            self._producer.close(timeout=timeout)
        report = self._tally.report()
        if report.sent or report.failed or report.pending:  # not all told by an earlier flush
            log.info("producer closed: %s", report.describe())
        return report

    def _leave(self, *, clean: bool) -> None:
        report = self.close()
        if clean:
            report.raise_if_failed()

    def _check(self, topic: str, message: Mapping[str, Any]) -> tuple[bytes, bytes, dict[str, Any]]:
        """The record key and value of ``message``, and the value as the worker will decode it.

        The key is the message's ``user_id`` (UTF-8), as the worker requires.

        Raises:
            InvalidEventError: Why the worker would dead-letter it.
        """
        if self._closed:
            raise ClientError("the producer is closed")
        try:
            value = orjson.dumps(dict(message))
        except orjson.JSONEncodeError as exc:
            raise InvalidEventError(Reason.INVALID_JSON, f"cannot be encoded: {exc}") from None
        user_id = message.get("user_id")  # encodable: the value with it was
        key = user_key(user_id) if isinstance(user_id, str) else None
        verdict = self._validate(topic, key, value, self._clock())
        if isinstance(verdict, Rejection):
            raise InvalidEventError(verdict.reason, verdict.detail)
        return user_key(verdict["user_id"]), value, verdict

    def _produce(
        self,
        topic: str,
        key: bytes,
        value: bytes,
        message: dict[str, Any],
        record_id: str,
    ) -> Future[Delivered]:
        outcome = self._tally.track(topic, record_id, message)
        try:
            sent = self._producer.send(topic, value=value, key=key)
        except KafkaError as exc:  # no metadata in max_block_ms, a record too large
            outcome.failed(exc)
            return outcome.future
        sent.add_callback(lambda metadata: outcome.succeeded(metadata.partition, metadata.offset))
        sent.add_errback(outcome.failed)
        return outcome.future
