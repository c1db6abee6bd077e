"""Spend records and the book every worker keeps: pacing, overspend, report totals."""

from __future__ import annotations

import math
from collections.abc import Callable

import fastjsonschema
import orjson
import pytest

from streams.pipeline.ads.campaigns import Campaign, CampaignBook
from streams.pipeline.ads.spend import (
    DAYS_KEPT,
    SECONDS_PER_DAY,
    ReportPart,
    SpendBook,
    SpendDelta,
    day_name,
    day_start,
)
from streams.pipeline.validation import load_schema

DAY = 19_675 * 86_400.0  # 2023-11-14, 00:00 UTC
TODAY = "2023-11-14"


@pytest.fixture
def book(make_campaign: Callable[..., Campaign]) -> SpendBook:
    """A book over c1 (budget 100) and c2 (budget 10), pacing slack 0.1."""
    campaigns = CampaignBook(max_campaigns=10)
    campaigns.upsert(make_campaign("c1", daily_budget=100.0))
    campaigns.upsert(make_campaign("c2", daily_budget=10.0))
    return SpendBook("w1", campaigns=campaigns, pacing_slack=0.1)


def test_a_delta_round_trips_through_its_record() -> None:
    delta = SpendDelta("c1", TODAY, 4, 2, 1, 1.25, ReportPart(3, 4, 1, 1, 1.0))
    raw = delta.to_json(worker="w1", ts=DAY + 5)
    fastjsonschema.compile(load_schema("schemas/ads_spend.schema.json"))(orjson.loads(raw))
    assert SpendDelta.from_json(raw) == ("w1", delta)


@pytest.mark.parametrize(
    "raw",
    [
        None,
        b"not json",
        b'{"campaign_id": "c1"}',
        SpendDelta("c1", TODAY, spend=-1.0).to_json(worker="w1", ts=1.0),
        SpendDelta("c1", "14/11/2023").to_json(worker="w1", ts=1.0),
    ],
)
def test_a_bad_spend_record_is_a_value_error(raw: bytes | None) -> None:
    with pytest.raises(ValueError):
        SpendDelta.from_json(raw)


def test_pacing_lets_spend_run_ahead_of_the_day_by_the_slack_only(
    book: SpendBook, make_campaign: Callable[..., Campaign]
) -> None:
    c1 = make_campaign("c1", daily_budget=100.0)
    book.add(SpendDelta("c1", TODAY, spend=30.0))
    book.add(SpendDelta("c1", TODAY, spend=5.0))  # from another worker: summed
    assert book.spent("c1", TODAY) == 35.0
    # 35 spent: allowed once a quarter of the day is gone (25 + the slack of 10).
    assert book.opens_at(c1, 19_675) == pytest.approx(0.25)
    assert not book.may_serve(c1, DAY + 0.24 * SECONDS_PER_DAY)
    assert book.may_serve(c1, DAY + 0.26 * SECONDS_PER_DAY)
    assert book.may_serve(c1, DAY + SECONDS_PER_DAY)  # a new day, nothing spent
    book.add(SpendDelta("c1", TODAY, spend=65.0))
    assert not book.may_serve(c1, DAY + 0.99 * SECONDS_PER_DAY)  # the budget is spent
    assert book.opens_at(c1, 19_675) == math.inf


def test_a_campaign_whose_budget_left_cannot_pay_its_bid_stops_for_the_day(
    book: SpendBook, make_campaign: Callable[..., Campaign]
) -> None:
    c1 = make_campaign("c1", daily_budget=1.0, amount=0.4)
    book.add(SpendDelta("c1", TODAY, clicks=1, spend=0.4))
    assert book.may_serve(c1, DAY + 0.99 * SECONDS_PER_DAY)  # 0.6 left: one more click
    book.add(SpendDelta("c1", TODAY, clicks=1, spend=0.4))
    # 0.2 left: a click at the bid would pass the budget by half a bid.
    assert not book.may_serve(c1, DAY + 0.99 * SECONDS_PER_DAY)


def test_overspent_and_paced_out_campaigns_are_counted(book: SpendBook) -> None:
    book.add(SpendDelta("c2", TODAY, spend=10.4))  # 4 % over
    now = DAY + 0.5 * SECONDS_PER_DAY
    assert book.overspent(now, 0.05) == 0 and book.overspent(now, 0.03) == 1
    assert book.paced_out(now) == 1  # c2; c1 has spent nothing
    assert sorted(book.today(now)) == [("c1", 0.0, 100.0), ("c2", 10.4, 10.0)]


def test_report_totals_are_the_summed_report_parts_of_a_day(book: SpendBook) -> None:
    book.add(SpendDelta("c1", TODAY, 3, report=ReportPart(2, 3, 0, 0, 0.0)))
    book.add(SpendDelta("c1", TODAY, 1, 1, spend=0.5, report=ReportPart(1, 1, 1, 0, 0.5)))
    book.add(SpendDelta("c2", "2023-11-13", 1, report=ReportPart(1, 1, 0, 0, 0.0)))
    assert book.report_totals(TODAY) == {"c1": ReportPart(3, 4, 1, 0, 0.5)}


def test_the_book_keeps_the_last_few_days(book: SpendBook) -> None:
    book.add(SpendDelta("c1", TODAY, spend=1.0))
    later = day_name(int(day_start(TODAY) // SECONDS_PER_DAY) + DAYS_KEPT)
    book.add(SpendDelta("c1", later, spend=2.0))
    assert book.spent("c1", TODAY) == 0.0 and book.spent("c1", later) == 2.0


def test_an_added_delta_is_copied(book: SpendBook) -> None:
    delta = SpendDelta("c1", TODAY, spend=1.0, report=ReportPart(spend=1.0))
    book.add(delta)
    book.add(delta)
    assert book.spent("c1", TODAY) == 2.0 and delta.spend == 1.0 and delta.report.spend == 1.0
