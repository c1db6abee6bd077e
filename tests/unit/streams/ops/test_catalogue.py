"""``intentstream items load``: a catalogue file read and checked before anything is sent."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pytest

from streams.ops.catalogue import read_items


def test_a_csv_catalogue_becomes_schema_valid_items(tmp_path: Path) -> None:
    path = tmp_path / "items.csv.gz"
    text = "id,title,category,price,brand\ni1,Red shoe,shoes,59.9,Acme\ni2,Hat,,,\n"
    path.write_bytes(gzip.compress(text.encode()))
    items = read_items(path)
    assert [item_id for item_id, _ in items] == ["i1", "i2"]
    assert orjson.loads(items[0][1]) == {
        "id": "i1",
        "title": "Red shoe",
        "category": "shoes",
        "price": 59.9,
        "brand": "Acme",
    }
    assert orjson.loads(items[1][1]) == {"id": "i2", "title": "Hat"}


def test_json_lines_keep_unknown_fields(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    path.write_text(
        '{"id": "i1", "title": "Shoe", "colour": "red"}\n\n{"id": "i2", "title": "Hat"}\n'
    )
    assert [orjson.loads(value) for _, value in read_items(path)] == [
        {"id": "i1", "title": "Shoe", "colour": "red"},
        {"id": "i2", "title": "Hat"},
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("item,name\ni1,Shoe\n", "1: expected a CSV header with id,title"),
        ("id,title,colour\ni1,Shoe,red\n", "1: expected a CSV header with id,title"),
        ("id,title\ni1\n", "2: expected 2 fields, got 1"),
        ("id,title,price\ni1,Shoe,cheap\n", "2: price is not a number"),
        ("id,title\ni1,\n", "2: not a catalogue item"),
        ('{"id": "i1"}\n', "1: not a catalogue item"),
        ('{"id": "i1", "title": "Shoe"\n', "1: invalid JSON"),
    ],
)
def test_a_bad_header_or_item_names_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "items.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=f"{path}:{message}"):
        read_items(path)
