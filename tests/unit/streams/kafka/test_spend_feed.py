"""The spend feed: the other workers' deltas into the book, its own skipped, every day noted,
bad records to the DLQ; a starting worker reads from the previous day."""

from __future__ import annotations

import asyncio
import itertools

from streams.kafka.spend_feed import DaysSeen, SpendFeed, previous_day_start
from streams.pipeline.ads.campaigns import CampaignBook
from streams.pipeline.ads.spend import ReportPart, SpendBook, SpendDelta
from streams.pipeline.crypto import RecordSealer
from streams.pipeline.records import InputRecord, OutputRecord
from streams.settings import Settings

SEALER = RecordSealer(bytes(32), purpose=b"test")
DAY, NEXT = "2026-03-01", "2026-03-02"


def _record(offset: int, value: bytes) -> InputRecord:
    return InputRecord(b"c1", value, topic="spend", partition=0, offset=offset, timestamp=0.0)


def _delta(day: str, spend: float, *, worker: str) -> bytes:
    delta = SpendDelta("c1", day, clicks=1, spend=spend, report=ReportPart(users=1, spend=spend))
    return delta.to_json(worker=worker, ts=0.0)


def _feed() -> tuple[SpendFeed, SpendBook, DaysSeen, list[OutputRecord]]:
    book = SpendBook("me", campaigns=CampaignBook(max_campaigns=1), pacing_slack=0.1)
    days = DaysSeen(clock=itertools.count().__next__)
    letters: list[OutputRecord] = []

    async def send(records: list[OutputRecord]) -> None:
        letters.extend(records)

    feed = SpendFeed(
        Settings(dlq_topic="dlq"),
        book=book,
        days=days,
        send_dead_letters=send,
        seal=SEALER.seal,
        loaded=asyncio.Event(),
    )
    return feed, book, days, letters


async def test_other_workers_spend_is_added_and_its_own_skipped_but_every_day_noted() -> None:
    feed, book, days, letters = _feed()
    await feed.apply(
        [
            _record(0, _delta(DAY, 1.5, worker="other")),
            _record(1, _delta(DAY, 7.0, worker="me")),  # the pipeline added it already
            _record(2, _delta(DAY, 0.5, worker="third")),
            _record(3, _delta(NEXT, 9.0, worker="me")),
        ]
    )
    assert book.spent("c1", DAY) == 2.0 and book.spent("c1", NEXT) == 0.0
    assert book.report_totals(DAY)["c1"].users == 2
    assert dict(days.first_seen) == {DAY: 0, NEXT: 1}  # own records make a day due too
    assert letters == []


async def test_a_bad_spend_record_goes_to_the_dlq_and_the_rest_still_count() -> None:
    feed, book, _, letters = _feed()
    await feed.apply(
        [
            _record(0, b"{}"),
            _record(1, b"not json"),
            _record(2, _delta(DAY, 1.0, worker="other")),
        ]
    )
    assert book.spent("c1", DAY) == 1.0
    assert [dict(letter.headers)["reason"] for letter in letters] == [b"invalid_value"] * 2
    assert SEALER.open(letters[1].value or b"") == (b"c1", b"not json")


def test_a_starting_worker_reads_from_the_start_of_the_previous_utc_day() -> None:
    midnight = 1_772_323_200.0  # 2026-03-01 00:00 UTC
    assert previous_day_start(midnight + 12 * 3600) == midnight - 86_400
    assert previous_day_start(midnight) == midnight - 86_400


def test_only_the_newest_days_are_remembered() -> None:
    days = DaysSeen(keep=2, clock=itertools.count().__next__)
    for day in (NEXT, DAY, "2026-03-03", NEXT):
        days.note(day)
    assert dict(days.first_seen) == {NEXT: 0, "2026-03-03": 2}
