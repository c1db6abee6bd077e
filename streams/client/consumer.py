"""Read recommendations as typed values: all of them, one user's, or up to the topic's end.

Usage from a shop's script (docs/consuming.md)::

    from streams.client import RecommendationConsumer
    from streams.settings import Settings

    with RecommendationConsumer(Settings(), group="push-service") as recommendations:
        for rec in recommendations:
            print(rec.user_id, rec.item_ids)
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterator
from typing import Any, TypedDict

from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.structs import OffsetAndMetadata

from streams.client.closing import ClosedOnExit
from streams.client.connection import connect
from streams.client.errors import ClientError, InvalidRecommendationError
from streams.client.partitioner import partition_for, user_key
from streams.client.recommendation import Recommendation
from streams.kafka.security import client_security
from streams.settings import Settings

log = logging.getLogger(__name__)

#: Longest wait of one fetch, so that ``idle_timeout`` and the end are noticed.
POLL_SECONDS = 0.5
#: A group's offsets are committed at least this often while reading, and on close.
COMMIT_SECONDS = 5.0


class Reading(TypedDict, total=False):
    """What a :class:`RecommendationConsumer` reads and when it stops: its keyword arguments,
    for code that passes them on (``streams.ops.tail``)."""

    topic: str | None
    group: str | None
    user: str | None
    from_beginning: bool
    stop_at_end: bool
    idle_timeout: float | None


class RecommendationConsumer(ClosedOnExit):
    """Follows ``settings.recommendations_topic``; iterating yields :class:`Recommendation` s.

    Without ``group`` nothing is committed and every partition is read; with one,
    the group's members share the partitions and the offsets of the records handed
    out are committed (every few seconds and on close), so a restart goes on after
    the last record it yielded. ``user`` reads only the partition that user's
    records land on and yields only theirs.

    A record that is not a valid recommendation raises
    :class:`InvalidRecommendationError` from the iteration; the consumer has moved
    past it, and iterating again goes on. :meth:`records` yields the raw records.

    Args:
        settings: Broker address, security and topic names.
        topic: The topic to read; default ``settings.recommendations_topic``.
        group: Consumer group whose offsets are kept; ``None`` = none.
        user: Only this raw user id's recommendations.
        from_beginning: Start at the oldest retained record, not at the end (with
            ``group``: only where the group has no committed offset).
        stop_at_end: End the iteration once every partition read is at the end
            it had when the consumer got it (for reports and ``tail``).
        idle_timeout: End the iteration when no record came for this many seconds.

    Raises:
        BrokerError: The cluster cannot be reached or refused the login.
        ClientError: The topic does not exist (with ``user``, or without ``group``).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        topic: str | None = None,
        group: str | None = None,
        user: str | None = None,
        from_beginning: bool = False,
        stop_at_end: bool = False,
        idle_timeout: float | None = None,
    ) -> None:
        self.topic = settings.recommendations_topic if topic is None else topic
        self._group = group
        self._user_key = None if user is None else user_key(user)
        self._stop_at_end = stop_at_end
        self._idle_timeout = idle_timeout
        self._buffer: deque[ConsumerRecord] = deque()
        self._ends: dict[TopicPartition, int] = {}
        self._handed: dict[TopicPartition, int] = {}
        self._committed_at = time.monotonic()
        self._closed = False
        self._consumer = connect(
            settings,
            "consumer",
            lambda: KafkaConsumer(
                bootstrap_servers=settings.bootstrap,
                client_id="intentstream-client",
                group_id=group,
                enable_auto_commit=False,
                auto_offset_reset="earliest" if from_beginning else "latest",
                **client_security(settings),
            ),
        )
        try:
            self._take_partitions(user)
        except BaseException:
            self._consumer.close(autocommit=False)
            raise

    def __iter__(self) -> Iterator[Recommendation]:
        """The recommendations, in order within each partition (so within each user).

        Raises:
            InvalidRecommendationError: A record is not a recommendation.
        """
        for record in self.records():
            try:
                yield Recommendation.from_json(record.value)
            except ValueError as exc:
                raise InvalidRecommendationError(
                    topic=record.topic, partition=record.partition, offset=record.offset,
                    detail=str(exc),
                ) from None  # fmt: skip

    def records(self) -> Iterator[ConsumerRecord]:
        """The raw records (key, value, partition, offset, timestamp), undecoded."""
        idle_since = time.monotonic()
        while True:
            while self._buffer:
                record = self._buffer.popleft()
                self._handed[TopicPartition(record.topic, record.partition)] = record.offset + 1
                if self._user_key is None or record.key == self._user_key:
                    yield record
                    idle_since = time.monotonic()
            self._commit_every(COMMIT_SECONDS)
            if self._stop_at_end and self._at_end():
                return
            idle = time.monotonic() - idle_since
            if self._idle_timeout is not None and idle > self._idle_timeout:
                return
            for batch in self._consumer.poll(timeout_ms=POLL_SECONDS * 1000).values():
                self._buffer.extend(batch)

    def close(self) -> None:
        """Commit the group's offsets (when there is a group) and leave it."""
        if self._closed:
            return
        self._closed = True
        try:
            self._commit_every(0.0)
        finally:
            self._consumer.close(autocommit=False)

    def _leave(self, *, clean: bool) -> None:
        self.close()

    def _take_partitions(self, user: str | None) -> None:
        """Assign the user's partition or all of them, or join the group's assignment."""
        if user is None and self._group is not None:
            self._consumer.subscribe([self.topic], listener=_CommitOnRevoke(self))
            return
        partitions = sorted(self._consumer.partitions_for_topic(self.topic))
        if not partitions:
            raise ClientError(f"topic {self.topic} does not exist")
        if user is not None:
            partitions = [partitions[partition_for(user, len(partitions))]]
        assigned = [TopicPartition(self.topic, partition) for partition in partitions]
        self._consumer.assign(assigned)
        for tp in assigned:  # resolve the start now: "from now on" means from here
            self._consumer.position(tp)

    def _at_end(self) -> bool:
        """Every assigned partition read up to the end it had when it was assigned."""
        assigned = self._consumer.assignment()
        if not assigned:
            return False
        new = [tp for tp in assigned if tp not in self._ends]
        if new:
            self._ends.update(self._consumer.end_offsets(new))
        return all(self._consumer.position(tp) >= self._ends[tp] for tp in assigned)

    def _commit_every(self, seconds: float) -> None:
        if self._group is None or not self._handed:
            return
        if time.monotonic() - self._committed_at < seconds:
            return
        self._commit(list(self._handed))

    def _commit(self, partitions: list[TopicPartition]) -> None:
        offsets = {
            tp: OffsetAndMetadata(self._handed.pop(tp), "", -1)
            for tp in partitions
            if tp in self._handed
        }
        if offsets:
            self._consumer.commit(offsets)
        self._committed_at = time.monotonic()


class _CommitOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Commits what was handed out of a partition before the group takes it away."""

    def __init__(self, owner: RecommendationConsumer) -> None:
        self._owner = owner

    def on_partitions_revoked(self, revoked: Any) -> None:
        self._owner._commit(list(revoked))
        self._owner._ends.clear()

    def on_partitions_assigned(self, assigned: Any) -> None:
        return None
