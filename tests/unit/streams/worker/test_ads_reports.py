"""The report releaser: who releases (the owner of partition 0), when (a later day's first
spend came the delay ago) and how often (once per campaign and day, the feed included)."""

from __future__ import annotations

import asyncio

import orjson
from prometheus_client import CollectorRegistry

from streams.kafka.spend_feed import DaysSeen
from streams.metrics.ads import AdsMetrics
from streams.pipeline.ads.campaigns import Campaign, CampaignBook
from streams.pipeline.ads.spend import ReportPart, SpendBook, SpendDelta, day_start
from streams.pipeline.crypto import RecordSealer
from streams.pipeline.records import InputRecord, OutputRecord
from streams.settings import Settings
from streams.worker.ads_reports import ReleasedReports, ReportReleaser, ReportsFeed, due_days

DAY, NEXT = "2026-03-01", "2026-03-02"
DELAY = 60.0
SETTINGS = Settings(ads_report_delay_seconds=DELAY, ads_reports_topic="reports", dlq_topic="dlq")
SEALER = RecordSealer(bytes(32), purpose=b"test")


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Releasing:
    """A releaser over two campaigns that ran on DAY, with spend on DAY from two workers."""

    def __init__(self) -> None:
        self.clock, self.owner, self.sent = Clock(), True, []
        self.campaigns = CampaignBook(max_campaigns=10)
        for cid in ("c1", "c2"):
            self.campaigns.upsert(Campaign(cid, "acme", ("i1",), "click", 0.4, 50.0, 0.0, None))
        self.spend = SpendBook("me", campaigns=self.campaigns, pacing_slack=0.1)
        for _ in range(2):
            part = ReportPart(users=1, impressions=2, clicks=1, spend=0.4)
            self.spend.add(SpendDelta("c1", DAY, impressions=2, clicks=1, spend=0.4, report=part))
        self.days = DaysSeen(clock=self.clock)
        self.released = ReleasedReports()
        self.registry = CollectorRegistry()

        async def send(records: list[OutputRecord]) -> None:
            self.sent.extend(records)

        self.releaser = ReportReleaser(
            SETTINGS,
            spend=self.spend,
            campaigns=self.campaigns,
            days=self.days,
            released=self.released,
            owns_first_partition=lambda: self.owner,
            send=send,
            ready=[],
            metrics=AdsMetrics(self.registry),
            clock=self.clock,
            wall=lambda: day_start(NEXT) + 90.0,
        )

    def reports(self) -> dict[bytes, dict[str, object]]:
        return {r.key or b"": orjson.loads(r.value or b"") for r in self.sent}


def test_a_day_is_due_once_a_later_days_first_spend_came_the_delay_ago() -> None:
    seen = {DAY: 0.0, NEXT: 100.0}
    assert due_days(seen, now=159.0, delay=DELAY) == []
    assert due_days(seen, now=160.0, delay=DELAY) == [DAY]
    assert due_days({DAY: 0.0}, now=1e9, delay=DELAY) == []  # today is never due
    # Days are ordered by name, not by arrival: a late record of an older day is due too.
    assert due_days({NEXT: 0.0, DAY: 50.0}, now=60.0, delay=DELAY) == [DAY]


async def test_the_owner_releases_a_due_day_once_for_every_campaign_that_ran() -> None:
    r = Releasing()
    r.days.note(DAY)
    r.clock.now = 10.0
    r.days.note(NEXT)
    r.clock.now = 10.0 + DELAY - 1
    assert await r.releaser.release_due() == 0  # not yet
    r.clock.now = 10.0 + DELAY
    assert await r.releaser.release_due() == 2
    reports = r.reports()
    assert set(reports) == {b"c1|2026-03-01", b"c2|2026-03-01"}
    assert {record.topic for record in r.sent} == {"reports"}
    assert reports[b"c1|2026-03-01"]["released_at"] == day_start(NEXT) + 90.0
    r.clock.now += 3600
    assert await r.releaser.release_due() == 0  # once
    assert len(r.sent) == 2
    assert r.registry.get_sample_value("intentstream_ads_reports_released_total") == 2.0


async def test_only_the_owner_of_partition_0_releases() -> None:
    r = Releasing()
    r.days.note(DAY)
    r.days.note(NEXT)
    r.clock.now = 1e6
    r.owner = False
    assert await r.releaser.release_due() == 0 and r.sent == []
    r.owner = True  # a rebalance gave it partition 0
    assert await r.releaser.release_due() == 2


async def test_reports_on_the_feed_are_not_released_again_and_the_rest_are() -> None:
    """Another owner released c1 and crashed before c2: only c2 is left to release."""
    r = Releasing()
    feed = ReportsFeed(
        SETTINGS,
        released=r.released,
        send_dead_letters=_unexpected,
        seal=SEALER.seal,
        loaded=asyncio.Event(),
    )
    await feed.apply([_report_record(0, b"c1|2026-03-01", b"{}")])
    r.days.note(DAY)
    r.days.note(NEXT)
    r.clock.now = 1e6
    assert await r.releaser.release_due() == 1
    assert set(r.reports()) == {b"c2|2026-03-01"}


async def test_the_reports_feed_forgets_deleted_reports_and_dead_letters_bad_keys() -> None:
    released, letters = ReleasedReports(), []

    async def send(records: list[OutputRecord]) -> None:
        letters.extend(records)

    feed = ReportsFeed(
        SETTINGS,
        released=released,
        send_dead_letters=send,
        seal=SEALER.seal,
        loaded=asyncio.Event(),
    )
    await feed.apply(
        [
            _report_record(0, b"c1|2026-03-01", b"{}"),
            _report_record(1, b"c|2|2026-03-01", b"{}"),
            _report_record(2, b"c2|2026-03-01", b"{}"),
            _report_record(3, b"c2|2026-03-01", None),
            _report_record(4, b"no-day", b"{}"),
        ]
    )
    assert released.pending(DAY, ["c1", "c|2", "c2"]) == ["c2"]
    [letter] = letters
    assert dict(letter.headers)["reason"] == b"key_mismatch"


def test_days_past_the_remembered_ones_count_as_released() -> None:
    released = ReleasedReports(keep_days=2)
    for day in ("2026-03-01", "2026-03-02", "2026-03-03"):
        released.note("c1", day)
    assert released.pending("2026-03-01", ["c1", "c2"]) == []  # forgotten: never again
    assert released.pending("2026-03-02", ["c1", "c2"]) == ["c2"]


async def _unexpected(records: list[OutputRecord]) -> None:
    raise AssertionError(f"no dead letters expected: {records}")


def _report_record(offset: int, key: bytes, value: bytes | None) -> InputRecord:
    return InputRecord(key, value, topic="reports", partition=0, offset=offset, timestamp=0.0)
