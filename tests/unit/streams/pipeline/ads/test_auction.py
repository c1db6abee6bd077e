"""The auction (generalised second price over distinct items and campaigns) and blending."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.pipeline.ads.auction import Candidate, Winner, blend, run_auction
from streams.pipeline.ads.campaigns import Campaign

RESERVE = 0.05


def _candidate(campaign: Campaign, item: str, p: float, score: float = 0.1) -> Candidate:
    return Candidate(campaign, item, score, p, campaign.amount * p)


def test_the_winner_pays_the_ev_below_it_over_its_own_probability(
    make_campaign: Callable[..., Campaign],
) -> None:
    high = make_campaign("c1", amount=2.0)  # EV 2.0 x 0.1 = 0.2
    low = make_campaign("c2", amount=1.0)  # EV 1.0 x 0.15 = 0.15
    [winner] = run_auction(
        [_candidate(low, "b", 0.15), _candidate(high, "a", 0.1)], slots=1, reserve=RESERVE
    )
    assert winner.campaign is high and winner.item == "a"
    assert winner.price == pytest.approx(0.15 / 0.1)  # 1.5 per click: expected pay 0.15


def test_each_slot_pays_for_the_next_one_and_the_last_the_reserve(
    make_campaign: Callable[..., Campaign],
) -> None:
    first, second = make_campaign("c1", amount=1.0), make_campaign("c2", amount=1.0)
    winners = run_auction(
        [_candidate(first, "a", 0.3), _candidate(second, "b", 0.2)], slots=2, reserve=RESERVE
    )
    assert [(w.item, round(w.price, 6)) for w in winners] == [("a", 0.666667), ("b", RESERVE)]


def test_a_campaign_never_sets_its_own_price(make_campaign: Callable[..., Campaign]) -> None:
    """Its second item below it is no competition: alone, it pays the reserve."""
    only = make_campaign("c1", items=("a", "b"), amount=1.0)
    [winner] = run_auction(
        [_candidate(only, "a", 0.3), _candidate(only, "b", 0.2)], slots=2, reserve=RESERVE
    )
    assert (winner.item, winner.price) == ("a", RESERVE)


def test_winners_are_distinct_items_and_campaigns(make_campaign: Callable[..., Campaign]) -> None:
    c1 = make_campaign("c1", items=("a", "b"), amount=1.0)
    c2 = make_campaign("c2", items=("a", "c"), amount=0.9)
    candidates = [
        _candidate(c1, "a", 0.3),
        _candidate(c1, "b", 0.29),
        _candidate(c2, "a", 0.3),
        _candidate(c2, "c", 0.1),
    ]
    winners = run_auction(candidates, slots=3, reserve=RESERVE)
    assert [(w.campaign.campaign_id, w.item) for w in winners] == [("c1", "a"), ("c2", "c")]


@st.composite
def _auctions(draw: st.DrawFn) -> tuple[list[Candidate], int]:
    n_campaigns = draw(st.integers(1, 5))
    campaigns = [
        Campaign(
            f"c{n}",
            "acme",
            ("a", "b", "c", "d"),
            draw(st.sampled_from(["click", "purchase"])),
            draw(st.floats(RESERVE, 1000.0)),
            100.0,
            0.0,
            None,
        )
        for n in range(n_campaigns)
    ]
    candidates = [
        _candidate(campaign, item, draw(st.floats(1e-6, 1.0)))
        for campaign in campaigns
        for item in draw(st.lists(st.sampled_from("abcd"), min_size=1, max_size=4, unique=True))
    ]
    return candidates, draw(st.integers(1, 5))


@given(_auctions())
def test_a_price_is_never_above_the_bid_nor_below_the_reserve(
    auction: tuple[list[Candidate], int],
) -> None:
    candidates, slots = auction
    winners = run_auction(candidates, slots=slots, reserve=RESERVE)
    assert 1 <= len(winners) <= slots
    for winner in winners:
        assert RESERVE <= winner.price <= winner.campaign.amount
    assert len({w.item for w in winners}) == len({w.campaign.campaign_id for w in winners})
    assert len({w.item for w in winners}) == len(winners)
    evs = {(c.campaign.campaign_id, c.item): c.ev for c in candidates}
    ranked = [evs[(w.campaign.campaign_id, w.item)] for w in winners]
    assert ranked == sorted(ranked, reverse=True)


def _winner(make_campaign: Callable[..., Campaign], item: str, cid: str) -> Winner:
    return Winner(make_campaign(cid, items=(item,)), item, 0.01, 0.1)


ORGANIC = [(f"o{n}", 1.0 - n / 100) for n in range(10)]


def test_sponsored_items_take_the_3rd_and_7th_places_and_the_tail_is_cut(
    make_campaign: Callable[..., Campaign],
) -> None:
    winners = [_winner(make_campaign, "x", "c1"), _winner(make_campaign, "y", "c2")]
    items, shown = blend(ORGANIC, winners, top_k=10)
    assert [item for item, _ in items] == ["o0", "o1", "x", "o2", "o3", "o4", "y", "o5", "o6", "o7"]
    assert shown == winners
    assert dict(items)["x"] == 0.01  # its own model score


def test_a_sponsored_item_leaves_its_organic_place(make_campaign: Callable[..., Campaign]) -> None:
    items, _ = blend(ORGANIC, [_winner(make_campaign, "o0", "c1")], top_k=10)
    assert [item for item, _ in items][:4] == ["o1", "o2", "o0", "o3"]
    assert len(items) == 10 and len({item for item, _ in items}) == 10


def test_a_short_list_gets_the_ads_appended_and_a_tiny_one_shows_fewer(
    make_campaign: Callable[..., Campaign],
) -> None:
    winners = [_winner(make_campaign, "x", "c1"), _winner(make_campaign, "y", "c2")]
    items, shown = blend(ORGANIC[:1], winners, top_k=10)
    assert [item for item, _ in items] == ["o0", "x", "y"] and shown == winners
    items, shown = blend(ORGANIC, winners, top_k=2)
    assert items == ORGANIC[:2] and shown == []  # the 3rd place is past the list
    items, shown = blend([], winners, top_k=2)
    assert [item for item, _ in items] == ["x", "y"] and shown == winners
