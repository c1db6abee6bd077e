"""Every worker follows the whole ``shop.items`` catalogue into its text index.

A search may match any item, so each worker needs all of the catalogue, not
the partitions its consumer group gave it: the follower reads every partition
of the compacted topic from the beginning with its own group-less consumer and
keeps following it. Titles are encoded off the event loop (the text encoder is
numpy) and applied on it, so the scoring agent never sees a half-updated index.
A tombstone removes the item. A bad item record goes to the DLQ with a reason,
like a bad event; with N workers it is written N times, with the same source
offset in its headers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from model.catalogue import TextCatalogue
from model.text import TextEncoder
from streams.records import InputRecord, OutputRecord, Sealer, dead_letter
from streams.settings import Settings
from streams.validation import ITEM_SCHEMA, RecordValidator, Rejection

log = logging.getLogger(__name__)

#: Longest a poll waits for new items (they change rarely; events never wait on it).
POLL_TIMEOUT_MS = 1_000
MAX_POLL_RECORDS = 1_024

SendDeadLetters = Callable[[list[OutputRecord]], Awaitable[None]]


@dataclass
class ItemChanges:
    """What one poll's records change: new titles, removed items, rejected records."""

    titles: dict[str, str] = field(default_factory=dict)
    removed: set[str] = field(default_factory=set)
    dead_letters: list[OutputRecord] = field(default_factory=list)


def item_changes(
    records: Sequence[InputRecord], validate: RecordValidator, *, dlq_topic: str, seal: Sealer
) -> ItemChanges:
    """Fold records in offset order: the last record of an item wins."""
    changes = ItemChanges()
    for record in records:
        if record.value is None and record.key:
            item = record.key.decode("utf-8", "replace")
            changes.titles.pop(item, None)
            changes.removed.add(item)
            continue
        outcome = validate(record.value)
        if isinstance(outcome, Rejection):
            changes.dead_letters.append(dead_letter(record, outcome, topic=dlq_topic, seal=seal))
            continue
        changes.removed.discard(outcome["id"])
        changes.titles[outcome["id"]] = outcome["title"]
    return changes


class CatalogueFollower:
    """Keeps a :class:`TextCatalogue` equal to ``shop.items``; ``loaded`` is set once caught up."""

    def __init__(
        self,
        settings: Settings,
        *,
        catalogue: TextCatalogue,
        encoder: TextEncoder,
        send_dead_letters: SendDeadLetters,
        seal: Sealer,
        loaded: asyncio.Event,
    ) -> None:
        self._settings = settings
        self._catalogue = catalogue
        self._encoder = encoder
        self._send_dead_letters = send_dead_letters
        self._seal = seal
        self._validate = RecordValidator(max_bytes=settings.max_event_bytes, schema=ITEM_SCHEMA)
        self.loaded = loaded

    async def run(self) -> None:
        """Follow the topic until cancelled.

        Without a group, aiokafka assigns the consumer every partition of the
        subscribed topic, and with no committed offsets it starts at the beginning.
        """
        consumer = AIOKafkaConsumer(
            self._settings.items_topic,
            bootstrap_servers=self._settings.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,
        )
        await consumer.start()
        ends: dict[TopicPartition, int] = {}
        try:
            while True:
                batches = await consumer.getmany(
                    timeout_ms=POLL_TIMEOUT_MS, max_records=MAX_POLL_RECORDS
                )
                for records in batches.values():
                    await self.apply([_input_record(r) for r in records])
                if self.loaded.is_set() or not consumer.assignment():
                    continue
                ends = ends or await consumer.end_offsets(list(consumer.assignment()))
                if await _reached(consumer, ends):
                    log.info("catalogue loaded: %d items", len(self._catalogue))
                    self.loaded.set()
        finally:
            await consumer.stop()

    async def apply(self, records: Sequence[InputRecord]) -> None:
        """Encode the new titles (in a thread), then update the catalogue and DLQ bad records."""
        changes = item_changes(
            records, self._validate, dlq_topic=self._settings.dlq_topic, seal=self._seal
        )
        if changes.titles:
            ids, titles = list(changes.titles), list(changes.titles.values())
            vectors = await asyncio.to_thread(self._encoder.encode_many, titles)
            self._catalogue.add(ids, vectors)
        self._catalogue.remove(changes.removed)
        if changes.dead_letters:
            log.warning("%d bad catalogue records sent to the DLQ", len(changes.dead_letters))
            await self._send_dead_letters(changes.dead_letters)


async def _reached(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    for partition, end in ends.items():
        if await consumer.position(partition) < end:
            return False
    return True


def _input_record(message: ConsumerRecord[bytes, bytes]) -> InputRecord:
    return InputRecord(
        key=message.key,
        value=message.value,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        timestamp=message.timestamp / 1000.0,
    )
