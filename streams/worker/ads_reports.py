"""The advertisers' DP reports: what was released, which days are due, and who releases them.

Every worker follows ``shop.ads.reports`` from the beginning (:class:`ReportsFeed`) to
know which (campaign, day) reports exist, and its spend feed notes when each day's
first spend record arrived (:class:`~streams.kafka.spend_feed.DaysSeen`). Only the
worker that owns partition 0 of the events topic releases (:class:`ReportReleaser`):
day D is due once a later day's first spend record came ``ads_report_delay_seconds``
ago, and each campaign that ran on D without a report for D gets one, drawn by
:func:`streams.pipeline.ads.reports.release_day` from every worker's totals. Released
reports are marked at once, so the releaser does not wait for the feed to see them.

During a rebalance nobody owns partition 0 and nothing is released; the next owner
releases once its feeds have caught up. A worker that lost partition 0 without
knowing it yet (paused past its session timeout, or cut off from the group
coordinator) may still release a day its successor also releases, before either
sees the other's reports on the feed: that (campaign, day) is then released twice
with independent noise. Compaction keeps the later report, but a reader of the
topic may have seen both, so that day's epsilon for that campaign doubles. A
worker that crashes halfway through sending a day's reports leaves the rest to the
next owner, which releases only the campaigns still without one. A starting worker
reads the spend of the current and the previous day only (by the records' time),
so a day whose spend records are older than that is released without them; a day
older than those a worker remembers (:data:`KEEP_DAYS`) is never released again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import orjson

from streams.kafka.feed import fold_latest, follow
from streams.kafka.spend_feed import KEEP_DAYS, DaysSeen
from streams.metrics.ads import AdsMetrics
from streams.pipeline.ads.campaigns import CampaignBook
from streams.pipeline.ads.reports import release_day, report_key
from streams.pipeline.ads.spend import SpendBook
from streams.pipeline.records import InputRecord, OutputRecord, Sealer, SendRecords
from streams.pipeline.validation import Reason, Rejection
from streams.settings import Settings

log = logging.getLogger(__name__)

#: Seconds between two looks at the due days by the owner of partition 0.
CHECK_SECONDS = 5.0


def parse_report_key(key: bytes | None) -> tuple[str, str] | Rejection:
    """(campaign id, day) of a report's key, or why it is not one (a campaign id may hold ``|``).

    Examples:
        >>> parse_report_key(b"c|1|2026-01-31")
        ('c|1', '2026-01-31')
        >>> parse_report_key(b"c1").reason
        <Reason.KEY_MISMATCH: 'key_mismatch'>
    """
    campaign, _, day = (key or b"").decode("utf-8", "replace").rpartition("|")
    if not campaign or len(day) != len("YYYY-MM-DD"):
        return Rejection(Reason.KEY_MISMATCH, "a report's key is 'campaign_id|YYYY-MM-DD'")
    return campaign, day


class ReleasedReports:
    """The campaigns that have a report, per day, for the newest :data:`KEEP_DAYS` days.

    Days older than those forgotten count as released: a worker must not release a
    day again for want of memory.
    """

    def __init__(self, *, keep_days: int = KEEP_DAYS) -> None:
        self._keep = keep_days
        self._days: dict[str, set[str]] = {}
        #: Days before this one were forgotten; "" while nothing was.
        self._horizon = ""

    def note(self, campaign_id: str, day: str) -> None:
        """``campaign_id`` has a report for ``day``."""
        if day < self._horizon:
            return
        self._days.setdefault(day, set()).add(campaign_id)
        if len(self._days) > self._keep:
            oldest = min(self._days)
            del self._days[oldest]
            self._horizon = min(self._days)

    def forget(self, campaign_id: str, day: str) -> None:
        """``campaign_id``'s report for ``day`` was deleted (a tombstone)."""
        self._days.get(day, set()).discard(campaign_id)

    def pending(self, day: str, campaigns: Collection[str]) -> list[str]:
        """The campaigns of ``campaigns`` without a report for ``day``, sorted.

        Examples:
            >>> released = ReleasedReports(keep_days=1)
            >>> released.note("c1", "2026-01-01")
            >>> released.pending("2026-01-01", ["c2", "c1"])
            ['c2']
            >>> released.note("c1", "2026-01-02")  # forgets 2026-01-01
            >>> released.pending("2026-01-01", ["c2"])
            []
        """
        if day < self._horizon:
            return []
        done = self._days.get(day, set())
        return sorted(c for c in campaigns if c not in done)


def due_days(first_seen: Mapping[str, float], *, now: float, delay: float) -> list[str]:
    """The days, oldest first, for which a later day's first spend record came ``delay`` ago.

    ``first_seen`` maps each day to when its first spend record arrived here.

    Examples:
        >>> due_days({"2026-01-01": 0.0, "2026-01-02": 100.0, "2026-01-03": 150.0},
        ...          now=170.0, delay=60.0)
        ['2026-01-01']
    """
    due, later = [], float("inf")
    for day in sorted(first_seen, reverse=True):
        if now - later >= delay:
            due.append(day)
        later = min(later, first_seen[day])
    return due[::-1]


class ReportsFeed:
    """Keeps :class:`ReleasedReports` equal to the reports topic; ``loaded`` once caught up.

    A record whose key is not ``campaign_id|YYYY-MM-DD`` goes to the DLQ with a reason.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        released: ReleasedReports,
        send_dead_letters: SendRecords,
        seal: Sealer,
        loaded: asyncio.Event,
    ) -> None:
        self._settings = settings
        self._released = released
        self._send_dead_letters = send_dead_letters
        self._seal = seal
        self.loaded = loaded

    async def run(self) -> None:
        """Follow the reports topic until cancelled (``streams.kafka.feed``)."""
        await follow(
            self._settings, self._settings.ads_reports_topic, apply=self.apply, loaded=self.loaded
        )

    async def apply(self, records: Sequence[InputRecord]) -> None:
        """Note the reports among ``records``; forget the deleted ones; DLQ bad keys."""
        changes = fold_latest(
            records, _report_of, dlq_topic=self._settings.dlq_topic, seal=self._seal
        )
        for key in changes.removed:
            parsed = parse_report_key(key.encode())
            if not isinstance(parsed, Rejection):
                self._released.forget(*parsed)
        for campaign, day in changes.latest.values():
            self._released.note(campaign, day)
        if changes.dead_letters:
            log.warning("%d bad report records sent to the DLQ", len(changes.dead_letters))
            await self._send_dead_letters(changes.dead_letters)


def _report_of(record: InputRecord) -> tuple[str, tuple[str, str]] | Rejection:
    parsed = parse_report_key(record.key)
    return parsed if isinstance(parsed, Rejection) else ("|".join(parsed), parsed)


class ReportReleaser:
    """Releases the due days' reports while this worker owns partition 0 of the events.

    ``owns_first_partition`` says whether it does now; ``ready`` are the feeds
    (reports, spend, campaigns) it waits for before its first look.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        spend: SpendBook,
        campaigns: CampaignBook,
        days: DaysSeen,
        released: ReleasedReports,
        owns_first_partition: Callable[[], bool],
        send: SendRecords,
        ready: Sequence[asyncio.Event],
        metrics: AdsMetrics,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._spend = spend
        self._campaigns = campaigns
        self._days = days
        self._released = released
        self._owns = owns_first_partition
        self._send = send
        self._ready = ready
        self._metrics = metrics
        self._clock = clock
        self._wall = wall

    async def run(self) -> None:
        """Look for due days every :data:`CHECK_SECONDS` once the feeds are loaded."""
        for event in self._ready:
            await event.wait()
        while True:
            await self.release_due()
            await asyncio.sleep(CHECK_SECONDS)

    async def release_due(self) -> int:
        """Release the due days' missing reports if this worker owns partition 0; how many."""
        if not self._owns():
            return 0
        delay = self._settings.ads_report_delay_seconds
        released = 0
        for day in due_days(self._days.first_seen, now=self._clock(), delay=delay):
            pending = set(self._released.pending(day, [c.campaign_id for c in self._campaigns]))
            reports = release_day(
                self._spend.report_totals(day),
                [c for c in self._campaigns if c.campaign_id in pending],
                day,
                self._settings,
                released_at=self._wall(),
            )
            if not reports:  # every campaign that ran on the day has its report
                continue
            await self._send([self._record(report) for report in reports])
            for report in reports:
                self._released.note(report["campaign_id"], day)
            released += len(reports)
            log.info("released %d campaign reports of %s", len(reports), day)
        self._metrics.released(released)
        return released

    def _record(self, report: Mapping[str, Any]) -> OutputRecord:
        return OutputRecord(
            topic=self._settings.ads_reports_topic,
            key=report_key(report["campaign_id"], report["day"]),
            value=orjson.dumps(report),
        )
