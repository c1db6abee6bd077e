"""Sponsored items' metrics: a batch's auctions and charges counted, campaign levels set,
every outcome exported from the start, and no campaign or advertiser in any label."""

from __future__ import annotations

from prometheus_client import generate_latest

from streams.metrics.ads import AUCTION_OUTCOMES
from streams.metrics.stats import BatchStats
from streams.metrics.worker import WorkerMetrics
from streams.ops.status import parse


def _stats(**fields: object) -> BatchStats:
    return BatchStats(**fields)  # type: ignore[arg-type]


def test_every_auction_outcome_is_exported_at_zero_from_the_start() -> None:
    scrape = parse("test", generate_latest(WorkerMetrics().registry).decode())
    assert scrape.labelled("intentstream_ads_auctions_total", "outcome") == dict.fromkeys(
        AUCTION_OUTCOMES, 0.0
    )


def test_batches_count_auctions_slots_impressions_and_charges() -> None:
    metrics = WorkerMetrics()
    for _ in range(2):
        metrics.record_batch(
            _stats(
                ads_auctions={"filled": 3, "paced": 1},
                ads_slots_offered=8,
                ads_impressions=5,
                ads_clicks=2,
                ads_purchases=1,
                ads_spend=0.75,
            ),
            seconds=0.01,
        )
    metrics.ads.set_campaigns(held=12, overspent=1, paced_out=4)
    metrics.ads.released(3)
    scrape = parse("test", generate_latest(metrics.registry).decode())
    auctions = scrape.labelled("intentstream_ads_auctions_total", "outcome")
    assert (auctions["filled"], auctions["paced"], auctions["capped"]) == (6.0, 2.0, 0.0)
    assert scrape.value("intentstream_ads_slots_offered_total") == 16.0
    assert scrape.value("intentstream_ads_impressions_total") == 10.0
    assert scrape.value("intentstream_ads_clicks_total") == 4.0
    assert scrape.value("intentstream_ads_purchases_total") == 2.0
    assert scrape.value("intentstream_ads_spend_total") == 1.5
    assert scrape.value("intentstream_ads_campaigns") == 12.0
    assert scrape.value("intentstream_ads_campaigns_overspent") == 1.0
    assert scrape.value("intentstream_ads_campaigns_paced_out") == 4.0
    assert scrape.value("intentstream_ads_reports_released_total") == 3.0


def test_no_ads_metric_has_a_label_but_the_outcome() -> None:
    labels = {
        name
        for family in WorkerMetrics().registry.collect()
        if family.name.startswith("intentstream_ads_")
        for sample in family.samples
        for name in sample.labels
    }
    assert labels == {"outcome"}
