"""Exceptions raised by the client (:mod:`streams.client`).

An event or erasure request that breaks the contract raises before anything is
sent; a record the broker did not acknowledge is reported, never dropped
silently. A cluster that cannot be reached raises :class:`streams.errors.BrokerError`,
as every other intentstream client does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from streams.errors import IntentstreamError
from streams.pipeline.validation import Reason

if TYPE_CHECKING:
    from streams.client.delivery import DeliveryReport


class ClientError(IntentstreamError):
    """Base class of the errors of the producer and consumer client."""


class InvalidEventError(ClientError, ValueError):
    """An event or erasure request that the worker would dead-letter; it was not sent.

    Attributes:
        reason: The dead-letter reason the worker would give (the ``reason`` header
            of ``shop.events.dlq``, docs/producing.md).
        detail: Which field or limit, in words; it never holds the user id.
    """

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


class DeliveryError(ClientError):
    """Records the broker did not acknowledge (a failed send, or a flush that timed out).

    Attributes:
        report: What was sent, what failed and why, what was still pending.
    """

    def __init__(self, message: str, report: DeliveryReport | None = None) -> None:
        super().__init__(message)
        self.report = report


class InvalidRecommendationError(ClientError, ValueError):
    """A record of the recommendations topic that is not a recommendation.

    The consumer has moved past it: iterating again goes on with the next record.

    Attributes:
        topic, partition, offset: Where the record was read.
        detail: What is wrong with it.
    """

    def __init__(self, *, topic: str, partition: int, offset: int, detail: str) -> None:
        super().__init__(f"{topic}[{partition}]@{offset} is not a recommendation: {detail}")
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.detail = detail
