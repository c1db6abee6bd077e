"""Every worker follows ``shop.ads.spend`` into its :class:`SpendBook`: every worker's spend.

Pacing must see what the other workers charged, and the report releaser needs every
worker's totals, so each worker reads every partition with a group-less consumer
(``streams.kafka.feed``). Records this process wrote carry its worker id and are
skipped: the pipeline added them when it made them. A starting worker reads from
the beginning of the previous UTC day (by the records' time) rather than the whole
topic: pacing needs today's spend and the releaser yesterday's (Tansu answers a
time lookup with the first offset, so there it reads the whole topic, which its
memory storage keeps short; the book forgets days past its own). The feed also
notes when each day's first spend record arrived (:class:`DaysSeen`), own records
included: a later day's first record is what makes a day's report due
(``streams.worker.ads_reports``). A record that does not parse goes to the DLQ
with a reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence

from streams.kafka.feed import follow
from streams.pipeline.ads.spend import SECONDS_PER_DAY, SpendBook, SpendDelta
from streams.pipeline.records import InputRecord, Sealer, SendRecords, dead_letter
from streams.pipeline.validation import Reason, Rejection
from streams.settings import Settings

log = logging.getLogger(__name__)

#: Days a worker remembers: when their first spend record came, which reports they have.
KEEP_DAYS = 8


def previous_day_start(now: float) -> float:
    """Epoch seconds at the start of the UTC day before the one holding ``now``.

    Examples:
        >>> previous_day_start(2 * 86_400 + 5.0)
        86400.0
    """
    return float((now // SECONDS_PER_DAY - 1) * SECONDS_PER_DAY)


class DaysSeen:
    """When the first spend record of each day (``YYYY-MM-DD``) arrived here, newest days only.

    Examples:
        >>> days = DaysSeen(keep=2, clock=iter([1.0, 2.0, 3.0]).__next__)
        >>> for day in ("2026-01-01", "2026-01-01", "2026-01-02", "2026-01-03"):
        ...     days.note(day)
        >>> days.first_seen
        {'2026-01-02': 2.0, '2026-01-03': 3.0}
    """

    def __init__(
        self, *, keep: int = KEEP_DAYS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._keep = keep
        self._clock = clock
        self._first: dict[str, float] = {}

    @property
    def first_seen(self) -> Mapping[str, float]:
        """Day -> when its first spend record arrived (the clock's seconds)."""
        return self._first

    def note(self, day: str) -> None:
        """A spend record of ``day`` arrived now."""
        if day in self._first:
            return
        self._first[day] = self._clock()
        if len(self._first) > self._keep:
            del self._first[min(self._first)]


class SpendFeed:
    """Adds the other workers' spend records to ``book``; ``loaded`` once caught up."""

    def __init__(
        self,
        settings: Settings,
        *,
        book: SpendBook,
        days: DaysSeen,
        send_dead_letters: SendRecords,
        seal: Sealer,
        loaded: asyncio.Event,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._book = book
        self._days = days
        self._send_dead_letters = send_dead_letters
        self._seal = seal
        self._wall = wall
        self.loaded = loaded

    async def run(self) -> None:
        """Follow the spend topic from the previous day until cancelled."""
        await follow(
            self._settings,
            self._settings.ads_spend_topic,
            apply=self.apply,
            loaded=self.loaded,
            since=previous_day_start(self._wall()),
        )

    async def apply(self, records: Sequence[InputRecord]) -> None:
        """Add the other workers' deltas, note each record's day; DLQ records that do not parse."""
        letters = []
        for record in records:
            try:
                worker, delta = SpendDelta.from_json(record.value)
            except ValueError as exc:
                rejection = Rejection(Reason.INVALID_VALUE, f"bad spend record: {exc}"[:200])
                letters.append(
                    dead_letter(record, rejection, topic=self._settings.dlq_topic, seal=self._seal)
                )
                continue
            self._days.note(delta.day)
            if worker != self._book.worker_id:
                self._book.add(delta)
        if letters:
            log.warning("%d bad spend records sent to the DLQ", len(letters))
            await self._send_dead_letters(letters)
