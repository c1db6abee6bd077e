"""Recorded event logs: canonical event CSVs or JSONL, optionally gzipped, read as events.

The canonical CSV has the columns :data:`CSV_COLUMNS` in this order; JSONL lines are
event objects. Nothing is validated here: the worker does, and dead-letters what it
rejects. Event ids are derived from file name and line, so a replayed log has stable ids.
"""

from __future__ import annotations

import csv
import gzip
import itertools
import math
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

import orjson

#: Header of the canonical event CSV, in this order.
CSV_COLUMNS = ("ts", "user_id", "session_id", "type", "item_id", "category", "price", "query")

#: Namespace of the uuid5 event ids, so ids only depend on file name and line.
EVENT_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "intentstream:replay")


def event_id(file_name: str, line: int) -> str:
    """Deterministic event id, so replaying a file twice yields the same ids.

    Examples:
        >>> event_id("events.csv.gz", 2) == event_id("events.csv.gz", 2)
        True
        >>> event_id("events.csv.gz", 2) == event_id("events.csv.gz", 3)
        False
    """
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{file_name}:{line}"))


def read_events(path: Path, *, limit: int | None = None) -> Iterator[dict[str, Any]]:
    """Events of a canonical CSV or JSONL file (gzip detected by content).

    Args:
        path: The file; JSONL is recognised by a first line starting with ``{``.
        limit: Stop after this many events (``None`` = all).

    Returns:
        Event dicts in file order, as in DESIGN.md. CSV fields that are empty
        are left out; unknown event types are kept for the worker to reject.

    Raises:
        FileNotFoundError: ``path`` is not a file.
        ValueError: A bad ``limit``; while iterating, a malformed header, row
            or line, naming file and line.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    if not path.is_file():  # now, not at the first event, after connecting to a broker
        raise FileNotFoundError(f"no such file: {path}")
    return _read(path, limit=limit)


def _read(path: Path, *, limit: int | None) -> Iterator[dict[str, Any]]:
    with _open_text(path) as stream:
        first = stream.readline()
        lines = itertools.chain([first], stream)
        if first.lstrip().startswith("{"):
            events = _jsonl_events(lines, path=path)
        else:
            events = _csv_events(lines, path=path)
        yield from itertools.islice(events, limit)


def _open_text(path: Path) -> TextIO:
    with path.open("rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
    # utf-8-sig tolerates a byte-order mark from spreadsheet exports.
    if gzipped:
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return path.open(encoding="utf-8-sig", newline="")


def _csv_events(lines: Iterable[str], *, path: Path) -> Iterator[dict[str, Any]]:
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None or tuple(header) != CSV_COLUMNS:
        raise ValueError(
            f"{path}:1: expected the CSV header {','.join(CSV_COLUMNS)}, "
            f"got {','.join(header or [])!r}"
        )
    for row in reader:
        if row:  # a blank line is no event
            yield _csv_event(
                row,
                file_name=_source_name(path),
                where=f"{path}:{reader.line_num}",
                line=reader.line_num,
            )


def _csv_event(row: list[str], *, file_name: str, where: str, line: int) -> dict[str, Any]:
    if len(row) != len(CSV_COLUMNS):
        raise ValueError(f"{where}: expected {len(CSV_COLUMNS)} fields, got {len(row)}")
    ts, user_id, session_id, type_, item_id, category, price, query = row
    event: dict[str, Any] = {
        "event_id": event_id(file_name, line),
        "user_id": user_id,
        "session_id": session_id,
        "ts": _finite(ts, name="ts", where=where),
        "type": type_,
    }
    if item_id:
        event["item_id"] = item_id
    if category:
        event["category"] = category
    if price:
        event["price"] = _finite(price, name="price", where=where)
    if query:
        event["query"] = query
    return event


def _finite(text: str, *, name: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{where}: {name} is not a number: {text!r}") from None
    # NaN/inf would silently become JSON null.
    if not math.isfinite(value):
        raise ValueError(f"{where}: {name} is not finite: {text!r}")
    return value


def _jsonl_events(lines: Iterable[str], *, path: Path) -> Iterator[dict[str, Any]]:
    for line_no, event in json_objects(lines, path=path):
        event.setdefault("event_id", event_id(_source_name(path), line_no))
        yield event


def json_objects(lines: Iterable[str], *, path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """The JSON object on each non-blank line, with its line number.

    Raises:
        ValueError: a line is not JSON or not an object; the message names ``path:line``.
    """
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as error:
            raise ValueError(f"{path}:{line_no}: invalid JSON: {error}") from None
        if not isinstance(value, dict):
            raise ValueError(
                f"{path}:{line_no}: expected a JSON object, got {type(value).__name__}"
            )
        yield line_no, value


def _source_name(path: Path) -> str:
    """Folder and file name: data sets share file names (``train.csv.gz``), ids must not."""
    return f"{path.parent.name}/{path.name}"


def log_catalogue(events: Iterable[dict[str, Any]]) -> dict[str, str | None]:
    """Item id -> category of every item the events name, in order of first mention.

    What a demo uses as its shop's catalogue when the data set ships none (the last
    category an event gives an item wins; None when none does).

    Examples:
        >>> log_catalogue([{"item_id": "a"}, {"item_id": "b", "category": "7"},
        ...                {"query": "tea"}, {"item_id": "a", "category": "3"}])
        {'a': '3', 'b': '7'}
    """
    catalogue: dict[str, str | None] = {}
    for event in events:
        item = event.get("item_id")
        if item is None:
            continue
        category = event.get("category")
        if category is not None or str(item) not in catalogue:
            catalogue[str(item)] = None if category is None else str(category)
    return catalogue
