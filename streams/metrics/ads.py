"""Prometheus metrics of sponsored items on a worker: auctions, what they showed and charged,
and the campaigns' pacing.

Fed by pushes like the rest of the worker's metrics: each batch's :class:`BatchStats`
(auctions by outcome, slots, impressions, clicks, purchases, spend) and, from a timer,
the campaign levels the worker reads off its campaigns and every worker's spend.
Labels never name a campaign, an advertiser or a shopper: only the auction's outcome.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from streams.metrics.stats import BatchStats

#: Outcomes of one answer's auction, bound at start so ``increase()`` sees the first one.
AUCTION_OUTCOMES = (
    "filled",
    "no_candidate",
    "below_floor",
    "paced",
    "capped",
    "uncalibrated",
    "disabled",
)


class AdsMetrics:
    """The sponsored items' series of a worker's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.auctions = Counter(
            "intentstream_ads_auctions_total",
            "Auctions for an answer's sponsored slots, by outcome (filled: at least one slot).",
            ["outcome"],
            registry=r,
        )
        self.slots = Counter(
            "intentstream_ads_slots_offered_total",
            "Sponsored slots the answers offered (impressions / slots = fill rate).",
            registry=r,
        )
        self.impressions = Counter(
            "intentstream_ads_impressions_total", "Sponsored items shown in answers.", registry=r
        )
        self.clicks = Counter(
            "intentstream_ads_clicks_total",
            "Clicks on sponsored items: a view or click of one within the attribution window "
            "(charged for per-click bids).",
            registry=r,
        )
        self.purchases = Counter(
            "intentstream_ads_purchases_total",
            "Purchases of items shown sponsored within the attribution window (charged for "
            "per-purchase bids).",
            registry=r,
        )
        self.spend = Counter(
            "intentstream_ads_spend_total",
            "Charges to campaigns, in the currency of their bids.",
            registry=r,
        )
        self.campaigns = Gauge(
            "intentstream_ads_campaigns", "Campaigns the worker holds.", registry=r
        )
        self.overspent = Gauge(
            "intentstream_ads_campaigns_overspent",
            "Campaigns whose spend today (every worker's) is above their daily budget by more "
            "than the overspend tolerance.",
            registry=r,
        )
        self.paced_out = Gauge(
            "intentstream_ads_campaigns_paced_out",
            "Active campaigns that pacing keeps out of auctions now.",
            registry=r,
        )
        self.reports = Counter(
            "intentstream_ads_reports_released_total",
            "Advertisers' DP reports (one per campaign and day) this worker released.",
            registry=r,
        )
        for outcome in AUCTION_OUTCOMES:
            self.auctions.labels(outcome)

    def record(self, stats: BatchStats) -> None:
        """Count one batch's auctions, slots, impressions and charges."""
        for outcome, count in stats.ads_auctions.items():
            self.auctions.labels(outcome).inc(count)
        self.slots.inc(stats.ads_slots_offered)
        self.impressions.inc(stats.ads_impressions)
        self.clicks.inc(stats.ads_clicks)
        self.purchases.inc(stats.ads_purchases)
        self.spend.inc(stats.ads_spend)

    def set_campaigns(self, *, held: int, overspent: int, paced_out: int) -> None:
        """Levels of the campaigns, as the worker last counted them."""
        self.campaigns.set(held)
        self.overspent.set(overspent)
        self.paced_out.set(paced_out)

    def released(self, reports: int) -> None:
        """Count reports this worker released."""
        self.reports.inc(reports)
