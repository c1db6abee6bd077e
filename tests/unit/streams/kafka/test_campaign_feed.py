"""Folding campaign records into a worker's book: the last record wins, tombstones remove,
bad records and campaigns past the book's bound go to the DLQ with a reason."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from streams.kafka.campaign_feed import CampaignFeed
from streams.pipeline.ads.campaigns import CampaignBook
from streams.pipeline.crypto import RecordSealer
from streams.pipeline.records import InputRecord, OutputRecord
from streams.settings import Settings

SEALER = RecordSealer(bytes(32), purpose=b"test")


def _campaign(cid: str, *items: str, **fields: Any) -> tuple[bytes, bytes]:
    value = {
        "campaign_id": cid,
        "advertiser": "acme",
        "items": list(items or ("i1",)),
        "bid": {"per": "click", "amount": 0.4},
        "daily_budget": 50.0,
        "start": 0.0,
        "end": None,
        **fields,
    }
    return cid.encode(), orjson.dumps(value)


def _records(*pairs: tuple[bytes, bytes | None]) -> list[InputRecord]:
    return [
        InputRecord(key=k, value=v, topic="campaigns", partition=0, offset=n, timestamp=0.0)
        for n, (k, v) in enumerate(pairs)
    ]


def _feed(max_campaigns: int = 10) -> tuple[CampaignFeed, CampaignBook, list[OutputRecord]]:
    book, letters = CampaignBook(max_campaigns=max_campaigns), []

    async def send(records: list[OutputRecord]) -> None:
        letters.extend(records)

    settings = Settings(dlq_topic="dlq", ads_max_campaigns=max_campaigns)
    feed = CampaignFeed(
        settings, book=book, send_dead_letters=send, seal=SEALER.seal, loaded=asyncio.Event()
    )
    return feed, book, letters


def _reasons(letters: list[OutputRecord]) -> list[bytes]:
    return [dict(letter.headers)["reason"] for letter in letters]


async def test_the_last_record_of_a_campaign_wins_and_tombstones_remove() -> None:
    feed, book, letters = _feed()
    await feed.apply(
        _records(
            _campaign("c1", "i1"),
            _campaign("c2", "i2"),
            _campaign("c1", "i3"),
            (b"c2", None),
        )
    )
    assert [c.campaign_id for c in book] == ["c1"]
    assert book.for_item("i1") == () and [c.campaign_id for c in book.for_item("i3")] == ["c1"]
    await feed.apply(_records((b"c1", None), (b"never-there", None)))
    assert len(book) == 0 and letters == []


async def test_bad_campaign_records_go_to_the_dlq_with_their_reason_sealed() -> None:
    feed, book, letters = _feed()
    wrong_key = (b"other", _campaign("c1")[1])
    await feed.apply(
        _records(
            (b"x", b"not json"),
            wrong_key,
            _campaign("c2", end=-1.0),
            _campaign("c3", start=100.0, end=50.0),
            _campaign("c4", colour="red"),
            _campaign("ok"),
        )
    )
    assert [c.campaign_id for c in book] == ["ok"]
    assert _reasons(letters) == [
        b"invalid_json",
        b"key_mismatch",
        b"invalid_value",
        b"invalid_value",
        b"invalid_value",
    ]
    assert SEALER.open(letters[1].value or b"") == wrong_key
    assert {letter.topic for letter in letters} == {"dlq"}
    assert dict(letters[1].headers)["source_topic"] == b"campaigns"


async def test_a_full_book_refuses_new_campaigns_to_the_dlq_and_removals_make_room() -> None:
    feed, book, letters = _feed(max_campaigns=2)
    await feed.apply(_records(_campaign("c1"), _campaign("c2"), _campaign("c3")))
    assert sorted(c.campaign_id for c in book) == ["c1", "c2"]
    [refused] = letters
    assert dict(refused.headers)["reason"] == b"invalid_value"
    assert b"INTENTSTREAM_ADS_MAX_CAMPAIGNS" in dict(refused.headers)["detail"]
    assert SEALER.open(refused.value or b"") == _campaign("c3")
    # A changed campaign always fits; a tombstone in the same poll makes room first.
    await feed.apply(_records(_campaign("c3"), (b"c1", None), _campaign("c2", "i9")))
    assert sorted(c.campaign_id for c in book) == ["c2", "c3"]
    assert [c.campaign_id for c in book.for_item("i9")] == ["c2"]
    assert len(letters) == 1
