"""Folding catalogue records: last record of an item wins, tombstones remove, bad ones DLQ;
the catalogue stays within its bounds."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import orjson
import pytest

from model.serving.catalogue import CatalogueItems, TextCatalogue
from model.serving.text import TextEncoder, nfkc_prefix
from streams.kafka.catalogue_feed import CatalogueFeed, ItemChanges, admit, item_changes
from streams.pipeline.crypto import RecordSealer
from streams.pipeline.records import InputRecord, OutputRecord
from streams.pipeline.validation import ITEM_SCHEMA, RecordValidator
from streams.settings import Settings

VALIDATE = RecordValidator(max_bytes=4096, schema=ITEM_SCHEMA)
SEALER = RecordSealer(bytes(32), purpose=b"test")


def _records(*pairs: tuple[bytes, bytes | None]) -> list[InputRecord]:
    return [
        InputRecord(key=key, value=value, topic="shop.items", partition=0, offset=n, timestamp=0.0)
        for n, (key, value) in enumerate(pairs)
    ]


def _item(item: str, title: str, **fields: str) -> tuple[bytes, bytes]:
    return item.encode(), orjson.dumps({"id": item, "title": title, "price": 3.5, **fields})


def test_the_last_record_of_an_item_wins_and_tombstones_remove() -> None:
    changes = item_changes(
        _records(
            _item("a", "old title"),
            _item("b", "kettle"),
            _item("a", "new title"),
            (b"b", None),
            (b"c", None),
            _item("c", "back again"),
        ),
        VALIDATE,
        dlq_topic="dlq",
        seal=SEALER.seal,
    )
    assert changes.titles == {"a": "new title", "c": "back again"}
    assert changes.removed == {"b"}
    assert changes.dead_letters == []


def test_bad_item_records_become_dead_letters_with_reasons() -> None:
    changes = item_changes(
        _records((b"x", b'{"id": "x"}'), (b"y", b"not json"), (b"z", b'{"id": 5, "title": "t"}')),
        VALIDATE,
        dlq_topic="dlq",
        seal=SEALER.seal,
    )
    assert changes.titles == {}
    reasons = [dict(letter.headers)["reason"] for letter in changes.dead_letters]
    assert reasons == [b"missing_field", b"invalid_json", b"wrong_type"]
    assert SEALER.open(changes.dead_letters[0].value or b"") == (b"x", b'{"id": "x"}')
    assert {letter.topic for letter in changes.dead_letters} == {"dlq"}


def _catalogue(*items: str) -> CatalogueItems:
    catalogue = CatalogueItems()
    catalogue.update(dict.fromkeys(items))
    return catalogue


def test_new_items_past_the_bound_are_refused_in_offset_order() -> None:
    changes = ItemChanges(
        titles={"a": "re-titled", "x": "new", "y": "new", "z": "new"},
        categories={"a": "c1", "x": None, "y": "c2", "z": None},
    )
    admitted = admit(changes, _catalogue("a", "b"), max_items=3)
    assert admitted.titles == {"a": "re-titled", "x": "new"}
    assert admitted.categories == {"a": "c1", "x": None}
    assert admitted.refused == 2


def test_removals_in_the_same_poll_make_room() -> None:
    changes = ItemChanges(
        titles={"x": "new", "y": "new"},
        categories={"x": None, "y": None},
        removed={"a", "never-there"},
    )
    admitted = admit(changes, _catalogue("a", "b"), max_items=3)
    assert admitted.titles == {"x": "new", "y": "new"}
    assert admitted.refused == 0


def _feed(
    encoder: TextEncoder | None, settings: Settings
) -> tuple[CatalogueFeed, TextCatalogue, CatalogueItems, list[OutputRecord]]:
    """A catalogue feed, the empty catalogues it fills and the dead letters it sends."""
    catalogue, items, letters = TextCatalogue(dim=8), CatalogueItems(), []

    async def send(records: list[OutputRecord]) -> None:
        letters.extend(records)

    if encoder is not None:
        catalogue = TextCatalogue(dim=encoder.dim)
    feed = CatalogueFeed(
        settings,
        items=items,
        text=(catalogue, encoder) if encoder is not None else None,
        send_dead_letters=send,
        seal=SEALER.seal,
        loaded=asyncio.Event(),
    )
    return feed, catalogue, items, letters


async def test_a_full_catalogue_refuses_new_items_with_a_warning_and_counts_them(
    encoder: TextEncoder, caplog: pytest.LogCaptureFixture
) -> None:
    feed, catalogue, items, letters = _feed(encoder, Settings(max_catalogue_items=2))
    with caplog.at_level(logging.WARNING):
        await feed.apply(_records(_item("a", "kettle"), _item("b", "yoga mat"), _item("c", "tea")))
    assert catalogue.ids == ["a", "b"]
    assert feed.refused == 1
    assert "refused 1 new items of shop.items up to partition 0 offset 2" in caplog.text
    await feed.apply(_records((b"a", None), _item("c", "tea"), _item("b", "red yoga mat")))
    assert sorted(catalogue.ids) == ["b", "c"]
    await feed.apply(_records((b"b", None)))
    assert catalogue.ids == ["c"] == items.ids
    assert feed.refused == 1
    assert letters == []


async def test_long_titles_are_encoded_cut_to_the_title_bound(encoder: TextEncoder) -> None:
    feed, catalogue, _, _ = _feed(encoder, Settings(max_title_chars=16))
    title = "\ufdfa" * 2048  # the item schema's longest title, 18 NFKC characters each
    await feed.apply(_records(_item("a", title)))
    expected = encoder.encode_many([nfkc_prefix(title, 16)])
    np.testing.assert_array_equal(catalogue.matrix, expected)


async def test_without_text_search_the_feed_keeps_the_public_items_and_categories() -> None:
    """The popularity release and the list fill need the catalogue, text search or not."""
    feed, catalogue, items, letters = _feed(None, Settings(text_search=False))
    await feed.apply(
        _records(_item("a", "kettle", category="kitchen"), _item("b", "mat"), (b"x", b"{}"))
    )
    assert items.ids == ["a", "b"]
    assert (items.category("a"), items.category("b")) == ("kitchen", None)
    assert len(catalogue) == 0  # nothing encoded
    await feed.apply(_records((b"a", None), _item("b", "mat", category="sport")))
    assert items.by_category() == {"sport": ["b"]}
    assert [dict(letter.headers)["reason"] for letter in letters] == [b"missing_field"]
