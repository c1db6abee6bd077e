"""Every worker follows the whole ``shop.ads.campaigns`` topic into its :class:`CampaignBook`.

An auction may pick any campaign for any shopper, so each worker needs all of them,
not the partitions its consumer group gave it: like the catalogue, the compacted
topic is read from the beginning by a group-less consumer and then followed
(``streams.kafka.feed``), and the worker reports ready only once it has caught up.
A tombstone removes the campaign. A record that does not parse (schema, key other
than its ``campaign_id``, ``end`` not after ``start``) goes to the DLQ with a reason,
like a bad event; so does a new campaign that finds the book full
(``ads_max_campaigns``): it comes back only when produced again after tombstones
made room. With N workers a dead letter is written N times, with the same source
offset in its headers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from streams.kafka.feed import fold_latest, follow
from streams.pipeline.ads.campaigns import Campaign, CampaignBook, parse_campaign
from streams.pipeline.records import InputRecord, OutputRecord, Sealer, SendRecords, dead_letter
from streams.pipeline.validation import Reason, Rejection
from streams.settings import Settings

log = logging.getLogger(__name__)


def _parse(record: InputRecord) -> tuple[str, tuple[InputRecord, Campaign]] | Rejection:
    """A campaign with the record it came from (a full book sends that record to the DLQ)."""
    campaign = parse_campaign(record.key, record.value)
    return (
        campaign if isinstance(campaign, Rejection) else (campaign.campaign_id, (record, campaign))
    )


class CampaignFeed:
    """Keeps a :class:`CampaignBook` equal to the campaigns topic; ``loaded`` once caught up."""

    def __init__(
        self,
        settings: Settings,
        *,
        book: CampaignBook,
        send_dead_letters: SendRecords,
        seal: Sealer,
        loaded: asyncio.Event,
    ) -> None:
        self._settings = settings
        self._book = book
        self._send_dead_letters = send_dead_letters
        self._seal = seal
        self.loaded = loaded

    async def run(self) -> None:
        """Follow the campaigns topic until cancelled (``streams.kafka.feed``)."""
        await follow(
            self._settings, self._settings.ads_campaigns_topic, apply=self.apply, loaded=self.loaded
        )

    async def apply(self, records: Sequence[InputRecord]) -> None:
        """Update the book with this poll's records; DLQ the bad and refused ones."""
        letters = update_book(self._book, records, settings=self._settings, seal=self._seal)
        if letters:
            last = records[-1]
            log.warning(
                "%d bad or refused campaign records of %s up to partition %d offset %d sent "
                "to the DLQ",
                len(letters),
                last.topic,
                last.partition,
                last.offset,
            )
            await self._send_dead_letters(letters)


def update_book(
    book: CampaignBook, records: Sequence[InputRecord], *, settings: Settings, seal: Sealer
) -> list[OutputRecord]:
    """Remove, then add or replace ``records``' campaigns in offset order; the dead letters of
    the records that do not parse and of new campaigns refused by a full book."""
    changes = fold_latest(records, _parse, dlq_topic=settings.dlq_topic, seal=seal)
    for campaign_id in changes.removed:  # first: they make room
        book.remove(campaign_id)
    letters = changes.dead_letters
    full = Rejection(
        Reason.INVALID_VALUE,
        f"campaign refused: {settings.ads_max_campaigns} campaigns held "
        "(INTENTSTREAM_ADS_MAX_CAMPAIGNS)",
    )
    for record, campaign in changes.latest.values():
        if not book.upsert(campaign):
            letters.append(dead_letter(record, full, topic=settings.dlq_topic, seal=seal))
    return letters
