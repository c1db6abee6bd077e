"""Publishing a catalogue of item ids and categories to ``shop.items``.

The demo's data sets ship no catalogue (RetailRocket's item properties are hashed),
so the demo publishes its log's items with their categories and a placeholder
title, as a shop's product database would publish its products. The worker then
knows the shop's public item domain from the start: popularity is released over
it without a threshold, and every list is filled from it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

import orjson
from aiokafka import AIOKafkaProducer

from streams.kafka.security import client_security
from streams.settings import Settings

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
            await producer.send(
                settings.items_topic, item_record(item_id, category), key=item_id.encode()
            )
            for item_id, category in items.items()
        ]
        await asyncio.gather(*deliveries)  # raises the first failed delivery
    finally:
        await producer.stop()
    log.info("published %d catalogue items to %s", len(items), settings.items_topic)
    return len(items)
