"""Every worker follows the whole ``shop.items`` catalogue: its items, and their titles' vectors.

A search may match any item, and popularity is released over the whole
catalogue, so each worker needs all of it, not the partitions its consumer group
gave it: the follower reads every partition of the compacted topic from the
beginning with its own group-less consumer and keeps following it. Every worker
keeps the public item list (:class:`CatalogueItems`); with text search on, titles
are also encoded, off the event loop (the text encoder is numpy), and applied on
it, so the scoring agent never sees a half-updated index.
A tombstone removes the item. A bad item record goes to the DLQ with a reason,
like a bad event; with N workers it is written N times, with the same source
offset in its headers. The catalogue is bounded: titles are cut to
``max_title_chars`` before encoding, and new items past ``max_catalogue_items``
are refused and counted (a refused item comes back only when it is produced
again after tombstones made room).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from model.serving.catalogue import CatalogueItems, TextCatalogue
from model.serving.text import TextBudget, TextEncoder
from streams.kafka.feed import fold_latest, follow
from streams.pipeline.records import InputRecord, OutputRecord, Sealer, SendRecords
from streams.pipeline.validation import ITEM_SCHEMA, RecordValidator, Rejection
from streams.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class ItemChanges:
    """What one poll's records change: new titles and categories, removed items, rejected
    records.

    ``refused`` counts the new items left out of ``titles`` because the catalogue is full.
    """

    titles: dict[str, str] = field(default_factory=dict)
    categories: dict[str, str | None] = field(default_factory=dict)
    removed: set[str] = field(default_factory=set)
    dead_letters: list[OutputRecord] = field(default_factory=list)
    refused: int = 0


def item_changes(
    records: Sequence[InputRecord], validate: RecordValidator, *, dlq_topic: str, seal: Sealer
) -> ItemChanges:
    """Fold records in offset order: the last record of an item wins (:func:`fold_latest`)."""

    def parse(record: InputRecord) -> tuple[str, dict[str, Any]] | Rejection:
        outcome = validate(record.value)
        return outcome if isinstance(outcome, Rejection) else (outcome["id"], outcome)

    folded = fold_latest(records, parse, dlq_topic=dlq_topic, seal=seal)
    return ItemChanges(
        titles={item: value["title"] for item, value in folded.latest.items()},
        categories={item: value.get("category") or None for item, value in folded.latest.items()},
        removed=folded.removed,
        dead_letters=folded.dead_letters,
    )


def admit(changes: ItemChanges, catalogue: CatalogueItems, *, max_items: int) -> ItemChanges:
    """``changes`` less the new items that would grow ``catalogue`` past ``max_items``.

    Re-titled items always pass (they take no new row) and this poll's removals
    make room first; new items are admitted in offset order of their first record.
    """
    room = max_items - len(catalogue) + sum(item in catalogue for item in changes.removed)
    titles: dict[str, str] = {}
    for item, title in changes.titles.items():
        if item in catalogue:
            titles[item] = title
        elif room > 0:
            titles[item] = title
            room -= 1
    return replace(
        changes,
        titles=titles,
        categories={item: changes.categories[item] for item in titles},
        refused=len(changes.titles) - len(titles),
    )


class CatalogueFeed:
    """Keeps :class:`CatalogueItems` (and with an encoder a :class:`TextCatalogue`) equal to
    ``shop.items``; ``loaded`` is set once caught up.

    ``refused`` counts the new items refused so far because the catalogue was full.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        items: CatalogueItems,
        text: tuple[TextCatalogue, TextEncoder] | None,
        send_dead_letters: SendRecords,
        seal: Sealer,
        loaded: asyncio.Event,
    ) -> None:
        self._settings = settings
        self._items = items
        self._text = text
        self._send_dead_letters = send_dead_letters
        self._seal = seal
        self._validate = RecordValidator(max_bytes=settings.max_event_bytes, schema=ITEM_SCHEMA)
        self._titles = TextBudget(max_chars=settings.max_title_chars)
        self.loaded = loaded
        self.refused = 0

    async def run(self) -> None:
        """Follow the catalogue topic until cancelled (``streams.kafka.feed``)."""
        await follow(
            self._settings, self._settings.items_topic, apply=self.apply, loaded=self.loaded
        )

    async def apply(self, records: Sequence[InputRecord]) -> None:
        """Encode the new titles (in a thread), then update the catalogue and DLQ bad records."""
        changes = admit(
            item_changes(
                records, self._validate, dlq_topic=self._settings.dlq_topic, seal=self._seal
            ),
            self._items,
            max_items=self._settings.max_catalogue_items,
        )
        if changes.refused:
            self._count_refused(changes.refused, records[-1])
        if self._text is not None:
            catalogue, encoder = self._text
            titles = self._titles.truncate(list(changes.titles.values()))
            vectors = await asyncio.to_thread(encoder.encode_many, titles)
            catalogue.remove(changes.removed)  # first: admit() counted on the room it makes
            catalogue.add(list(changes.titles), vectors)
        self._items.remove(changes.removed)
        self._items.update(changes.categories)
        if changes.dead_letters:
            log.warning("%d bad catalogue records sent to the DLQ", len(changes.dead_letters))
            await self._send_dead_letters(changes.dead_letters)

    def _count_refused(self, count: int, last: InputRecord) -> None:
        self.refused += count
        log.warning(
            "catalogue full (max_catalogue_items=%d): refused %d new items of %s "
            "up to partition %d offset %d, %d in all",
            self._settings.max_catalogue_items,
            count,
            last.topic,
            last.partition,
            last.offset,
            self.refused,
        )
