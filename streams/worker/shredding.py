"""Rolls the ``user_keys`` changelog segment after an erasure: shredding needs no other traffic.

Kafka compacts only closed segments, and it closes the active one only when a
record arrives after ``segment.ms``. On a quiet partition the superseded ledger
holding an erased user's wrapped key could therefore stay for as long as nobody
else on that partition is active. After an erasure the worker appends one empty
record (a tombstone of a key no user has) to that partition once ``segment.ms``
has passed, which closes the segment; the broker's cleaner then drops the old
ledger (docs/privacy.md, "Erasure").
"""

from __future__ import annotations

import time

from streams.kafka.produce import kafka_producer, send_all
from streams.kafka.tables import KEY_CHANGELOG_CONFIGS, WorkerTables
from streams.kafka.transport import BatchingApp
from streams.pipeline.records import OutputRecord

#: The key of the record that closes a segment: no pseudonym is this short.
ROLL_KEY = b"\x00roll"
#: ``segment.ms`` of the ``user_keys`` changelog, in seconds.
SEGMENT_SECONDS = int(KEY_CHANGELOG_CONFIGS["segment.ms"]) / 1000.0


class SegmentRoller:
    """Remembers the partitions erasures wrote to, and closes their segment when it may roll.

    Args:
        partitions: the changelog's partitions, each rolled once after start: what was
            pending when the worker last stopped (or crashed) lived only in memory.
    """

    def __init__(self, partitions: int) -> None:
        #: changelog partition -> monotonic time of its last erasure not yet rolled
        self._pending: dict[int, float] = {}
        self.note(set(range(partitions)))

    def note(self, partitions: set[int]) -> None:
        """Partitions whose ``user_keys`` changelog just received an erasure's ledger.

        The roll waits ``segment.ms`` from the latest one: the broker closes a segment
        only when a record arrives after the segment is that old, and an earlier note
        (the start's) could otherwise roll too early and be forgotten.
        """
        now = time.monotonic()
        for partition in partitions:
            self._pending[partition] = now

    def due(self) -> list[int]:
        """The partitions whose segment is now old enough to roll; forgotten once returned."""
        cutoff = time.monotonic() - SEGMENT_SECONDS - 1.0
        ready = [p for p, since in self._pending.items() if since <= cutoff]
        for partition in ready:
            del self._pending[partition]
        return ready


def register_roller(app: BatchingApp, *, tables: WorkerTables, roller: SegmentRoller) -> None:
    """Every second, close the segments of partitions that erased a user long enough ago."""
    _, keys_topic, _ = tables.changelogs()

    @app.timer(1.0)
    async def roll_erased_segments() -> None:
        records = [
            OutputRecord(topic=keys_topic, key=ROLL_KEY, value=None, partition=partition)
            for partition in roller.due()
        ]
        if records:
            await send_all(kafka_producer(app), records)
