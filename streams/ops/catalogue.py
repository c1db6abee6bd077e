"""Publishing the shop's catalogue to ``shop.items``: a catalogue file, or a log's items.

``intentstream items load FILE`` publishes a catalogue file: a CSV whose header
holds ``id`` and ``title`` and any of ``category``, ``price``, ``brand``, or JSON
lines of item objects (docs/contracts.md), optionally gzipped. Every item is checked
against the item schema before anything is sent: a bad header or item stops it,
naming file and line.

The demo's data sets ship no catalogue (RetailRocket's item properties are hashed),
so the demo publishes its log's items with their categories and a placeholder
title, as a shop's product database would publish its products. The worker then
knows the shop's public item domain from the start: popularity is released over
it without a threshold, and every list is filled from it.
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import logging
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

import orjson
from aiokafka import AIOKafkaProducer

from streams.kafka.security import client_security
from streams.ops.event_log import json_objects
from streams.pipeline.validation import ITEM_SCHEMA, RecordValidator, Rejection
from streams.settings import Settings

#: Columns a catalogue CSV must have, and those it may have.
REQUIRED_COLUMNS = ("id", "title")
OPTIONAL_COLUMNS = ("category", "price", "brand")
#: Largest catalogue record (the schema bounds a title to 2,048 characters).
MAX_ITEM_BYTES = 16 * 1024

log = logging.getLogger(__name__)


def item_record(item_id: str, category: str | None) -> bytes:
    """The catalogue record of an item known only by id and category (schema: item).

    Examples:
        >>> item_record("42", "7")
        b'{"id":"42","title":"item 42","category":"7"}'
    """
    record: dict[str, str] = {"id": item_id, "title": f"item {item_id}"}
    if category is not None:
        record["category"] = category
    return orjson.dumps(record)


async def publish_catalogue(settings: Settings, items: Mapping[str, str | None]) -> int:
    """Produce one record per item to the catalogue topic, keyed by item id; how many.

    Raises:
        aiokafka.errors.KafkaError: the broker failed or rejected a send.
    """
    records = ((item_id, item_record(item_id, category)) for item_id, category in items.items())
    return await publish_items(settings, records)


async def publish_items(settings: Settings, records: Iterable[tuple[str, bytes]]) -> int:
    """Produce ``(item id, item JSON)`` records to the catalogue topic; how many.

    Raises:
        aiokafka.errors.KafkaError: the broker failed or rejected a send.
    """
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap,
        acks="all",
        linger_ms=20,
        max_batch_size=512 * 1024,
        **client_security(settings),
    )
    await producer.start()
    try:
        deliveries = [
            await producer.send(settings.items_topic, value, key=item_id.encode())
            for item_id, value in records
        ]
        await asyncio.gather(*deliveries)  # raises the first failed delivery
    finally:
        await producer.stop()
    log.info("published %d catalogue items to %s", len(deliveries), settings.items_topic)
    return len(deliveries)


def read_items(path: Path) -> list[tuple[str, bytes]]:
    """The items of a catalogue file as ``(item id, item JSON)``, each checked by the schema.

    Args:
        path: a CSV with a header (:data:`REQUIRED_COLUMNS`, then any of
            :data:`OPTIONAL_COLUMNS`) or JSON lines of item objects; gzip is detected.

    Raises:
        FileNotFoundError: there is no such file.
        ValueError: a bad header, row or item, naming file and line.
    """
    validate = RecordValidator(max_bytes=MAX_ITEM_BYTES, schema=ITEM_SCHEMA)
    items = []
    with _open_text(path) as stream:
        first = stream.readline()
        lines = [first, *stream] if first else []
        rows = json_objects if first.lstrip().startswith("{") else _csv_items
        for line, item in rows(lines, path=path):
            value = orjson.dumps(item)
            checked = validate(value)
            if isinstance(checked, Rejection):
                raise ValueError(f"{path}:{line}: not a catalogue item: {checked.detail}")
            items.append((str(checked["id"]), value))
    return items


def _open_text(path: Path) -> TextIO:
    with path.open("rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
    if gzipped:
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return path.open(encoding="utf-8-sig", newline="")


def _csv_items(lines: list[str], *, path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    reader = csv.reader(lines)
    header = [name.strip() for name in next(reader, [])]
    allowed = (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)
    wrong = [name for name in header if name not in allowed]
    if (
        wrong
        or any(name not in header for name in REQUIRED_COLUMNS)
        or len(set(header)) < len(header)
    ):
        raise ValueError(
            f"{path}:1: expected a CSV header with {','.join(REQUIRED_COLUMNS)} and any of "
            f"{','.join(OPTIONAL_COLUMNS)}, got {','.join(header)!r}"
        )
    for row in reader:
        if not row:
            continue
        if len(row) != len(header):
            raise ValueError(
                f"{path}:{reader.line_num}: expected {len(header)} fields, got {len(row)}"
            )
        pairs = zip(header, row, strict=True)
        item: dict[str, Any] = {name: value for name, value in pairs if value}
        if "price" in item:
            try:
                item["price"] = float(item["price"])
            except ValueError:
                raise ValueError(
                    f"{path}:{reader.line_num}: price is not a number: {item['price']!r}"
                ) from None
        yield reader.line_num, item
