"""Delivery outcomes of the producer: one per record, and a summary per flush.

The broker's acknowledgements arrive on the producer's I/O thread; the tally
counts them under a lock, so a flush on the caller's thread reports every record
sent since the previous flush exactly once: acknowledged, failed (with why), or
still pending when the flush gave up waiting.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from streams.client.errors import DeliveryError


@dataclass(frozen=True, slots=True)
class Delivered:
    """A record the broker acknowledged: where it was written.

    ``record_id`` is the event's ``event_id`` or the request's ``request_id``.
    """

    topic: str
    partition: int
    offset: int
    record_id: str


@dataclass(frozen=True, slots=True)
class DeliveryFailure:
    """A record the broker did not take after the producer's retries.

    ``message`` is the event or request as it was sent, to send it again.
    """

    topic: str
    record_id: str
    reason: str
    message: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """The records sent since the previous report: acknowledged, failed, still pending.

    Examples:
        >>> DeliveryReport(sent=3, failed=(), pending=0).ok
        True
        >>> DeliveryReport(sent=2, failed=(), pending=1)
        DeliveryReport(sent=2, failed=(), pending=1)
    """

    sent: int
    failed: tuple[DeliveryFailure, ...]
    pending: int

    @property
    def ok(self) -> bool:
        """Every record was acknowledged."""
        return not self.failed and not self.pending

    def describe(self) -> str:
        """One line: the counts and the first failure's reason.

        Examples:
            >>> failure = DeliveryFailure("shop.events", "e1", "KafkaTimeoutError: ...", {})
            >>> DeliveryReport(sent=5, failed=(failure,), pending=2).describe()
            '5 sent, 1 failed, 2 pending (first failure: KafkaTimeoutError: ...)'
        """
        line = f"{self.sent} sent, {len(self.failed)} failed, {self.pending} pending"
        return f"{line} (first failure: {self.failed[0].reason})" if self.failed else line

    def raise_if_failed(self) -> None:
        """Raise unless every record was acknowledged.

        Raises:
            DeliveryError: A record failed or is still pending; ``error.report`` is this.
        """
        if not self.ok:
            raise DeliveryError(f"not every record was delivered: {self.describe()}", self)


class DeliveryTally:
    """Counts outcomes as they arrive (from any thread) until :meth:`report` takes them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sent = 0
        self._failed: list[DeliveryFailure] = []
        self._pending = 0

    def track(self, topic: str, record_id: str, message: Mapping[str, Any]) -> Outcome:
        """Count one more record in flight; its :class:`Outcome` settles it once."""
        with self._lock:
            self._pending += 1
        return Outcome(self, topic, record_id, message)

    def _settle(self, failure: DeliveryFailure | None) -> None:
        with self._lock:
            self._pending -= 1
            if failure is None:
                self._sent += 1
            else:
                self._failed.append(failure)

    def report(self) -> DeliveryReport:
        """What settled since the previous report, and how many are still in flight."""
        with self._lock:
            report = DeliveryReport(self._sent, tuple(self._failed), self._pending)
            self._sent, self._failed = 0, []
            return report


class Outcome:
    """One record's future (``concurrent.futures``), settled exactly once, and tallied."""

    def __init__(
        self, tally: DeliveryTally, topic: str, record_id: str, message: Mapping[str, Any]
    ) -> None:
        self.future: Future[Delivered] = Future()
        self.future.set_running_or_notify_cancel()
        self._tally = tally
        self._topic = topic
        self._record_id = record_id
        self._message = message

    def succeeded(self, partition: int, offset: int) -> None:
        """The broker acknowledged the record at ``partition``/``offset``."""
        self._tally._settle(None)
        self.future.set_result(Delivered(self._topic, partition, offset, self._record_id))

    def failed(self, error: BaseException) -> None:
        """The record was not delivered, because of ``error``."""
        reason = f"{type(error).__name__}: {error}"
        self._tally._settle(DeliveryFailure(self._topic, self._record_id, reason, self._message))
        failure = DeliveryError(f"record {self._record_id} was not delivered: {reason}")
        failure.__cause__ = error
        self.future.set_exception(failure)
