"""Sponsored items: the auction, frequency caps, pacing and the advertisers' DP reports.

A group of :class:`streams.settings.Settings`; read only through it (docs/ads.md).
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class AdsSettings(BaseModel):
    """How sponsored items are chosen, paced and reported."""

    ads_campaigns_topic: str = Field(
        default="shop.ads.campaigns", description="Campaigns, keyed by campaign id (compacted)."
    )
    ads_spend_topic: str = Field(
        default="shop.ads.spend",
        description="Each worker's spend per campaign and day, read by every worker for pacing "
        "(internal: exact counts, no user ids).",
    )
    ads_reports_topic: str = Field(
        default="shop.ads.reports",
        description="DP reports per campaign and day for advertisers (compacted).",
    )
    ads_slots: int = Field(
        default=2,
        ge=0,
        le=5,
        description="Most sponsored items in one answer; 0 = no sponsored items.",
    )
    ads_depth: int = Field(
        default=100,
        ge=1,
        le=500,
        description="A campaign's item takes part in a shopper's auction only when it is among "
        "the top ads_depth items the model ranks for them (the relevance floor's first half).",
    )
    ads_min_click_probability: float = Field(
        default=0.005,
        ge=0,
        le=1,
        description="Least calibrated click probability a sponsored item needs to be shown (the "
        "relevance floor's second half).",
    )
    ads_reserve_price: float = Field(
        default=0.01,
        gt=0,
        description="Least price per click (or per purchase) a winning campaign pays.",
    )
    ads_frequency_cap: int = Field(
        default=3,
        ge=1,
        description="Most impressions of one campaign per shopper and day.",
    )
    ads_attribution_seconds: float = Field(
        default=1_800.0,
        gt=0,
        description="A click or purchase of a sponsored item is charged when it comes within "
        "this long after the impression.",
    )
    ads_pacing_slack: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="Share of its daily budget a campaign may spend ahead of even pacing over "
        "the day.",
    )
    ads_overspend_tolerance: float = Field(
        default=0.05,
        ge=0,
        description="Share of its daily budget a campaign may overspend before it counts as "
        "overspent (metric and alert).",
    )
    ads_report_epsilon: float = Field(
        default=1.0,
        gt=0,
        description="Epsilon of one campaign's report for one day, per shopper (split equally "
        "over users, impressions, clicks, purchases and spend).",
    )
    ads_report_max_campaigns: int = Field(
        default=4,
        ge=1,
        description="Most campaigns one shopper counts towards in a day's reports.",
    )
    ads_report_max_spend: float = Field(
        default=10.0,
        gt=0,
        description="Most spend one shopper adds to a campaign's report in a day (clipped).",
    )
    ads_report_min_users: int = Field(
        default=20,
        ge=1,
        description="A campaign's day is reported only when its noisy count of shoppers reaches "
        "this; otherwise the report says it was suppressed.",
    )
    ads_report_delay_seconds: float = Field(
        default=60.0,
        ge=0,
        description="A day is reported this long after the first spend of a later day arrives.",
    )
    ads_max_campaigns: int = Field(
        default=10_000,
        ge=1,
        description="Most campaigns a worker keeps; further ones go to the DLQ.",
    )
