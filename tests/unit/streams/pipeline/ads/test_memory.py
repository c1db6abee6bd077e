"""A shopper's ads memory: frequency caps, attribution of clicks and purchases, report bounds."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.pipeline.ads.memory import CAMPAIGNS_PER_DAY, RECENT_KEPT, AdsMemory, MemoryLimits
from streams.pipeline.ads.spend import ReportPart, SpendDelta
from streams.pipeline.state import UserState

LIMITS = MemoryLimits(
    frequency_cap=3,
    attribution_seconds=1800.0,
    report_max_campaigns=2,
    report_max_spend=1.0,
    future_seconds=300.0,
)
DAY = 19_675 * 86_400.0  # 2023-11-14, 00:00 UTC
NEVER = -1


def _impress(memory: AdsMemory, cid: str, item: str, ts: float, **fields: Any) -> SpendDelta:
    memory.roll(ts)
    options: dict[str, Any] = {"per": "click", "price": 0.4, "erased_before_ms": NEVER}
    return memory.impress(cid, item, ts=ts, limits=LIMITS, **{**options, **fields})


def _event(
    memory: AdsMemory, item: str, ts: float, *, purchase: bool = False, erased: int = NEVER
) -> SpendDelta | None:
    return memory.attribute(item, purchase=purchase, ts=ts, limits=LIMITS, erased_before_ms=erased)


def test_a_campaign_is_capped_per_day() -> None:
    memory = AdsMemory()
    for n in range(3):
        memory.roll(DAY + n)
        assert memory.may_show(["c1"], LIMITS.frequency_cap) == [True]
        _impress(memory, "c1", "a", DAY + n)
    assert memory.may_show(["c1", "c2"], LIMITS.frequency_cap) == [False, True]
    memory.roll(DAY + 86_400)  # the next day
    assert memory.may_show(["c1"], LIMITS.frequency_cap) == [True]


def test_a_shopper_is_shown_a_bounded_number_of_campaigns_a_day() -> None:
    memory = AdsMemory()
    for n in range(CAMPAIGNS_PER_DAY):
        _impress(memory, f"c{n}", "a", DAY)
    assert memory.may_show(["new", "c0"], LIMITS.frequency_cap) == [False, True]


def test_a_click_within_the_window_is_charged_once() -> None:
    memory = AdsMemory()
    _impress(memory, "c1", "a", DAY)
    assert _event(memory, "b", DAY + 10) is None  # another item
    charge = _event(memory, "a", DAY + 60)
    assert charge == SpendDelta("c1", "2023-11-14", 0, 1, 0, 0.4, ReportPart(0, 0, 1, 0, 0.4))
    assert _event(memory, "a", DAY + 70) is None  # a reload of the page
    _impress(memory, "c1", "a", DAY + 100)  # shown again: may be clicked again
    assert _event(memory, "a", DAY + 120) is not None


def test_a_click_after_the_window_or_before_the_impression_is_not_charged() -> None:
    memory = AdsMemory()
    _impress(memory, "c1", "a", DAY + 100)
    assert _event(memory, "a", DAY + 50) is None  # a late event from before it was shown
    assert _event(memory, "a", DAY + 100 + 1801) is None
    assert memory.recent == []


def test_the_latest_impression_of_an_item_gets_the_click() -> None:
    memory = AdsMemory()
    _impress(memory, "c1", "a", DAY, price=0.4)
    _impress(memory, "c2", "a", DAY + 5, price=0.7)
    charge = _event(memory, "a", DAY + 10)
    assert charge is not None and (charge.campaign_id, charge.spend) == ("c2", 0.7)
    assert _event(memory, "a", DAY + 20) is None  # the earlier one is clicked with it


def test_a_per_purchase_bid_is_charged_on_the_purchase_only() -> None:
    memory = AdsMemory()
    _impress(memory, "c1", "a", DAY, per="purchase", price=3.0)
    click = _event(memory, "a", DAY + 10)
    assert click is not None and (click.clicks, click.spend) == (1, 0.0)
    purchase = _event(memory, "a", DAY + 20, purchase=True)
    assert purchase is not None and (purchase.purchases, purchase.spend) == (1, 3.0)
    assert _event(memory, "a", DAY + 30, purchase=True) is None  # once


def test_a_purchase_of_a_per_click_item_counts_but_costs_nothing() -> None:
    memory = AdsMemory()
    _impress(memory, "c1", "a", DAY, per="click", price=0.4)
    purchase = _event(memory, "a", DAY + 10, purchase=True)
    assert purchase is not None and (purchase.purchases, purchase.spend) == (1, 0.0)


def test_recent_impressions_are_bounded() -> None:
    memory = AdsMemory()
    for n in range(RECENT_KEPT + 5):
        _impress(memory, f"c{n}", f"i{n}", DAY + n)
    assert len(memory.recent) == RECENT_KEPT
    assert _event(memory, "i0", DAY + 60) is None  # the oldest went first


def test_a_late_event_counts_in_the_current_day() -> None:
    memory = AdsMemory()
    _impress(memory, "c1", "a", DAY + 86_400 + 5)
    charge = _event(memory, "a", DAY + 86_400 + 10)
    assert charge is not None and charge.day == "2023-11-15"
    assert _impress(memory, "c2", "b", DAY + 100).day == "2023-11-15"  # yesterday's ts


def test_the_report_share_is_bounded_per_campaign_and_day() -> None:
    memory = AdsMemory()
    parts = [_impress(memory, "c1", "a", DAY + n, price=0.7).report for n in range(5)]
    assert [p.users for p in parts] == [1, 0, 0, 0, 0]
    assert sum(p.impressions for p in parts) == LIMITS.frequency_cap  # exact counts go on
    clicks = [_event(memory, "a", DAY + 10 + n) for n in range(5)]
    assert [c.report.clicks for c in clicks if c] == [1]  # one impression left unclicked each
    _impress(memory, "c1", "a", DAY + 20, price=0.7)
    again = _event(memory, "a", DAY + 21)
    assert again is not None and again.clicks == 1 and again.report.clicks == 0
    assert again.report.spend == pytest.approx(0.3)  # clipped at report_max_spend 1.0


def test_a_shopper_counts_towards_a_bounded_number_of_campaigns() -> None:
    memory = AdsMemory()
    users = [_impress(memory, f"c{n}", "a", DAY).report.users for n in range(4)]
    assert users == [1, 1, 0, 0]  # report_max_campaigns = 2
    third = _event(memory, "a", DAY + 1)  # the latest impression, of c3
    assert third is not None and third.report == ReportPart()


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["show", "view", "purchase"]),
            st.sampled_from(["c1", "c2", "c3"]),
            st.sampled_from(["a", "b"]),
            st.floats(0.0, 5.0),
            st.floats(0.0, 3 * 86_400.0),
        ),
        max_size=60,
    )
)
def test_no_day_gets_more_than_the_bound_from_one_shopper(
    steps: list[tuple[str, str, str, float, float]],
) -> None:
    memory = AdsMemory()
    totals: dict[tuple[str, str], ReportPart] = {}
    for action, cid, item, price, offset in steps:
        if action == "show":
            memory.roll(DAY + offset)
            delta: SpendDelta | None = _impress(memory, cid, item, DAY + offset, price=price)
        else:
            delta = _event(memory, item, DAY + offset, purchase=action == "purchase")
        if delta is not None:
            totals.setdefault((delta.day, delta.campaign_id), ReportPart()).add(delta.report)
    for day in {day for day, _ in totals}:
        parts = [part for (d, _), part in totals.items() if d == day]
        assert len([p for p in parts if p.users]) <= LIMITS.report_max_campaigns
        for part in parts:
            assert part.users <= 1 and part.clicks <= 1 and part.purchases <= 1
            assert part.impressions <= LIMITS.frequency_cap
            assert part.spend <= LIMITS.report_max_spend + 1e-9
            assert part.users == 1 or part == ReportPart()


def test_a_shopper_erased_since_the_day_began_adds_nothing_to_it() -> None:
    erased_ms = int((DAY + 3600) * 1000)
    memory = AdsMemory()  # what is left after the erasure: a new memory
    shown = _impress(memory, "c1", "a", DAY + 7200, erased_before_ms=erased_ms)
    assert (shown.impressions, shown.report) == (1, ReportPart())  # counted, not reported
    click = _event(memory, "a", DAY + 7300, erased=erased_ms)
    assert click is not None and click.spend == 0.4 and click.report == ReportPart()
    tomorrow = _impress(memory, "c1", "a", DAY + 86_400, erased_before_ms=erased_ms)
    assert tomorrow.report.users == 1


def test_an_erasure_just_before_midnight_closes_the_next_day_too() -> None:
    """Events applied before it may be stamped up to ``future_seconds`` into the next day."""
    assert not LIMITS.may_report(int((DAY - 60) * 1000), day=19_675)
    assert LIMITS.may_report(int((DAY - 301) * 1000), day=19_675)
    assert LIMITS.may_report(NEVER, day=19_675)


def test_the_memory_round_trips_through_the_users_state() -> None:
    state = UserState(items=["a"])
    state.ads = AdsMemory()
    _impress(state.ads, "c1", "a", DAY)
    _event(state.ads, "a", DAY + 1)
    again = UserState.from_bytes(state.to_bytes())
    assert again == state and again.ads is not None
    assert _event(again.ads, "a", DAY + 2) is None  # the click stayed recorded


def test_a_version_5_state_loads_without_ads() -> None:
    old = orjson.dumps([5, ["a"], [1, 0, 0, 0, 0], "s", 1, 0, 1.0, 0, {"0": 3}])
    state = UserState.from_bytes(old)
    assert state.items == ["a"] and state.offsets == {"0": 3} and state.ads is None
    assert UserState.from_bytes(state.to_bytes()) == state
