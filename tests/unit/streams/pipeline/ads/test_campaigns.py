"""Campaign records: parsed or rejected with a reason, never raising; the book's item index."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.pipeline.ads.campaigns import Campaign, CampaignBook, parse_campaign
from streams.pipeline.validation import Reason, Rejection

VALID: dict[str, Any] = {
    "campaign_id": "c1",
    "advertiser": "acme",
    "items": ["i1", "i2", "i1"],
    "bid": {"per": "purchase", "amount": 2.5},
    "daily_budget": 50,
    "start": 100,
    "end": 200.5,
    "targeting": {"categories": ["shoes"], "keywords": ["Running", "running"]},
    "status": "paused",
}


def _parse(value: dict[str, Any], key: bytes | None = b"c1") -> Campaign | Rejection:
    return parse_campaign(key, orjson.dumps(value))


def test_a_valid_record_is_the_campaign_it_describes() -> None:
    campaign = _parse(VALID)
    assert campaign == Campaign(
        "c1",
        "acme",
        ("i1", "i2"),  # a repeated item counts once
        "purchase",
        2.5,
        50.0,
        100.0,
        200.5,
        categories=frozenset({"shoes"}),
        keywords=("running",),  # lower-cased, once
        paused=True,
    )


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"bid": {"per": "view", "amount": 1}}, Reason.INVALID_VALUE),
        ({"bid": {"per": "click", "amount": 0}}, Reason.INVALID_VALUE),
        ({"bid": {"per": "click", "amount": 1000.5}}, Reason.INVALID_VALUE),
        ({"daily_budget": 0}, Reason.INVALID_VALUE),
        ({"items": []}, Reason.INVALID_VALUE),
        ({"items": [f"i{n}" for n in range(1001)]}, Reason.INVALID_VALUE),
        ({"campaign_id": "c" * 129}, Reason.INVALID_VALUE),
        ({"end": 100}, Reason.INVALID_VALUE),  # end must be after start
        ({"targeting": {"keywords": ["k"] * 101}}, Reason.INVALID_VALUE),
        ({"targeting": {"keywrods": ["running"]}}, Reason.INVALID_VALUE),  # would target all
        ({"budget": 5}, Reason.INVALID_VALUE),
        ({"start": "yesterday"}, Reason.WRONG_TYPE),
        ({"campaign_id": "c2"}, Reason.KEY_MISMATCH),
    ],
)
def test_a_bad_record_is_rejected_with_its_reason(change: dict[str, Any], reason: Reason) -> None:
    outcome = _parse({**VALID, **change})
    assert isinstance(outcome, Rejection) and outcome.reason == reason


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (None, orjson.dumps(VALID), Reason.KEY_MISMATCH),
        (b"\xff", orjson.dumps(VALID), Reason.NOT_UTF8),
        (b"c1", b"{not json", Reason.INVALID_JSON),
        (b"c1", b"[1]", Reason.NOT_OBJECT),
        (b"c1", None, Reason.NOT_OBJECT),
        (b"c1", b'{"campaign_id":"c1","pad":"' + b"x" * 600_000 + b'"}', Reason.TOO_LARGE),
    ],
)
def test_an_unreadable_record_is_rejected(
    key: bytes | None, value: bytes | None, reason: Reason
) -> None:
    outcome = parse_campaign(key, value)
    assert isinstance(outcome, Rejection) and outcome.reason == reason


@given(key=st.none() | st.binary(max_size=8), value=st.none() | st.binary(max_size=64))
def test_no_record_makes_it_raise(key: bytes | None, value: bytes | None) -> None:
    assert isinstance(parse_campaign(key, value), Campaign | Rejection)


JSON_VALUES = st.none() | st.integers(-(2**63), 2**63 - 1) | st.text() | st.lists(st.text())


@given(st.dictionaries(st.sampled_from(sorted(VALID)), JSON_VALUES))
def test_no_mix_of_fields_makes_it_raise(change: dict[str, Any]) -> None:
    assert isinstance(_parse({**VALID, **change}), Campaign | Rejection)


def test_active_from_start_until_end_unless_paused(make_campaign: Callable[..., Campaign]) -> None:
    campaign = make_campaign(start=10.0, end=20.0)
    assert [campaign.active(t) for t in (9.9, 10.0, 19.9, 20.0)] == [False, True, True, False]
    assert make_campaign(end=None).active(1e10)
    assert not make_campaign(paused=True).active(15.0)


def test_targeting(make_campaign: Callable[..., Campaign]) -> None:
    anywhere = make_campaign()
    shoes = make_campaign(categories=frozenset({"shoes"}))
    running = make_campaign(keywords=("running",))
    assert anywhere.matches(context="browse", query=None, category=None)
    assert shoes.matches(context="browse", query=None, category="shoes")
    assert not shoes.matches(context="browse", query=None, category="hats")
    assert not shoes.matches(context="browse", query=None, category=None)
    assert running.matches(context="search", query="Trail RUNNING shoes", category=None)
    assert not running.matches(context="search", query="hiking boots", category=None)
    assert not running.matches(context="browse", query=None, category=None)


def test_the_book_indexes_items_and_follows_replacements_and_removals(
    make_campaign: Callable[..., Campaign],
) -> None:
    book = CampaignBook(max_campaigns=2)
    assert book.upsert(make_campaign("c1", items=("a", "b")))
    assert book.upsert(make_campaign("c2", items=("b",)))
    assert [c.campaign_id for c in book.for_item("b")] == ["c1", "c2"]
    assert book.upsert(make_campaign("c1", items=("c",), amount=0.9))  # replaced: not a new one
    assert book.for_item("a") == () and [c.campaign_id for c in book.for_item("b")] == ["c2"]
    assert book.get("c1") is not None and book.get("c1").amount == 0.9  # type: ignore[union-attr]
    assert not book.upsert(make_campaign("c3"))  # full
    book.remove("c2")
    book.remove("unknown")
    assert book.for_item("b") == () and len(book) == 1
    assert book.upsert(make_campaign("c3"))  # room again
    assert sorted(c.campaign_id for c in book) == ["c1", "c3"]
