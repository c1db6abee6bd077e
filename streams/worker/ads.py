"""Sponsored items on a worker: the campaign, spend and report feeds, the report releaser,
and the campaign gauges.

The pipeline's campaigns and spend (``EventPipeline.campaigns``, ``.spend``) are kept
by the feeds; the worker reports ready once the campaigns and today's spend are read
(``streams.kafka.campaign_feed``, ``streams.kafka.spend_feed``). The releaser runs on
every worker and acts only on the one that owns partition 0 of the events topic
(``streams.worker.ads_reports``).
"""

from __future__ import annotations

import asyncio
import time

from faust.types import TP

from streams.kafka.campaign_feed import CampaignFeed
from streams.kafka.spend_feed import DaysSeen, SpendFeed
from streams.kafka.transport import BatchingApp
from streams.metrics.worker import WorkerMetrics
from streams.pipeline.batch import EventPipeline
from streams.pipeline.records import SendRecords
from streams.settings import Settings
from streams.worker.ads_reports import ReleasedReports, ReportReleaser, ReportsFeed

#: Seconds between two counts of the campaigns held, paced out and overspent.
CAMPAIGN_GAUGES_SECONDS = 15.0


def register_ads(
    app: BatchingApp,
    *,
    settings: Settings,
    pipeline: EventPipeline,
    metrics: WorkerMetrics,
    send: SendRecords,
    ready: list[asyncio.Event],
) -> None:
    """Start the feeds and the releaser with ``app``; ``ready`` gets the campaigns' and the
    spend's loaded events (reports only hold back the releaser)."""
    seal = pipeline.answers.seal
    campaigns = CampaignFeed(
        settings,
        book=pipeline.campaigns,
        send_dead_letters=send,
        seal=seal,
        loaded=asyncio.Event(),
    )
    days = DaysSeen()
    spend = SpendFeed(
        settings,
        book=pipeline.spend,
        days=days,
        send_dead_letters=send,
        seal=seal,
        loaded=asyncio.Event(),
    )
    released = ReleasedReports()
    reports = ReportsFeed(
        settings, released=released, send_dead_letters=send, seal=seal, loaded=asyncio.Event()
    )
    first = TP(settings.events_topic, 0)

    def owns_first_partition() -> bool:
        return not app.rebalancing and first in app.consumer.assignment()

    releaser = ReportReleaser(
        settings,
        spend=pipeline.spend,
        campaigns=pipeline.campaigns,
        days=days,
        released=released,
        owns_first_partition=owns_first_partition,
        send=send,
        ready=[campaigns.loaded, spend.loaded, reports.loaded],
        metrics=metrics.ads,
    )
    for task in (campaigns.run, spend.run, reports.run, releaser.run):
        app.task(task)
    ready.extend([campaigns.loaded, spend.loaded])

    @app.timer(CAMPAIGN_GAUGES_SECONDS)
    async def count_campaigns() -> None:
        """Today by this worker's clock: the overspend alert's quantity."""
        now = time.time()
        metrics.ads.set_campaigns(
            held=len(pipeline.campaigns),
            overspent=pipeline.spend.overspent(now, settings.ads_overspend_tolerance),
            paced_out=pipeline.spend.paced_out(now),
        )
