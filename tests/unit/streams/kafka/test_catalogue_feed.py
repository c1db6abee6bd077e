"""Folding catalogue records: last record of an item wins, tombstones remove, bad ones DLQ."""

from __future__ import annotations

import orjson

from streams.kafka.catalogue_feed import item_changes
from streams.pipeline.crypto import RecordSealer
from streams.pipeline.records import InputRecord
from streams.pipeline.validation import ITEM_SCHEMA, RecordValidator

VALIDATE = RecordValidator(max_bytes=4096, schema=ITEM_SCHEMA)
SEALER = RecordSealer(bytes(32), purpose=b"test")


def _records(*pairs: tuple[bytes, bytes | None]) -> list[InputRecord]:
    return [
        InputRecord(key=key, value=value, topic="shop.items", partition=0, offset=n, timestamp=0.0)
        for n, (key, value) in enumerate(pairs)
    ]


def _item(item: str, title: str) -> tuple[bytes, bytes]:
    return item.encode(), orjson.dumps({"id": item, "title": title, "price": 3.5})


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
