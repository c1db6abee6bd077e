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
from collections.abc import Sequence
from dataclasses import dataclass, field

from model.serving.catalogue import TextCatalogue
from model.serving.text import TextEncoder
from streams.kafka.feed import follow
from streams.pipeline.records import InputRecord, OutputRecord, Sealer, SendRecords, dead_letter
from streams.pipeline.validation import ITEM_SCHEMA, RecordValidator, Rejection
from streams.settings import Settings

log = logging.getLogger(__name__)


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


class CatalogueFeed:
    """Keeps a :class:`TextCatalogue` equal to ``shop.items``; ``loaded`` is set once caught up."""

    def __init__(
        self,
        settings: Settings,
        *,
        catalogue: TextCatalogue,
        encoder: TextEncoder,
        send_dead_letters: SendRecords,
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
        """Follow the catalogue topic until cancelled (``streams.kafka.feed``)."""
        await follow(
            self._settings, self._settings.items_topic, apply=self.apply, loaded=self.loaded
        )

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
