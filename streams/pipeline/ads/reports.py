"""Advertisers' daily reports: each campaign's day released once with OpenDP's Laplace noise.

The report parts summed over every worker (``SpendBook.report_totals``) hold each
shopper's bounded share only (``memory.py``). The domain is public: the campaigns
that ran on the day, taken from the campaigns, not from the data, so every one
of them gets a report, a zero count too. docs/privacy.md gives the guarantee.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from fractions import Fraction
from typing import Any

import numpy as np

from model.threshold import release_public_counts, release_sums, split_epsilon
from streams.pipeline.ads.campaigns import Campaign
from streams.pipeline.ads.spend import SECONDS_PER_DAY, ReportPart, day_start
from streams.settings import Settings

#: The measures of a report, each released at an equal share of the report's epsilon.
MEASURES = ("users", "impressions", "clicks", "purchases", "spend")


def release_day(
    totals: Mapping[str, ReportPart],
    campaigns: Iterable[Campaign],
    day: str,
    settings: Settings,
    *,
    released_at: float,
) -> list[dict[str, Any]]:
    """The DP reports of ``day`` for every campaign that ran on it (schema ``ads_report``).

    Each measure is released by OpenDP over the campaigns at its share of
    ``ads_report_epsilon``, with the L1 sensitivity one shopper can have:
    ``ads_report_max_campaigns`` campaigns times their bound in one campaign. A
    campaign whose noisy count of shoppers is below ``ads_report_min_users`` is
    reported suppressed, without counts. Release each day once: fresh noise on the
    same day would average out.
    """
    start = day_start(day)
    end = start + SECONDS_PER_DAY
    ran = [c for c in campaigns if c.start < end and (c.end is None or c.end > start)]
    if not ran:
        return []
    parts = [totals.get(c.campaign_id, ReportPart()) for c in ran]
    noisy = _noisy(parts, settings)
    reports = []
    for row, campaign in enumerate(ran):
        suppressed = bool(noisy["users"][row] < settings.ads_report_min_users)
        report: dict[str, Any] = {
            "campaign_id": campaign.campaign_id,
            "advertiser": campaign.advertiser,
            "day": day,
            "suppressed": suppressed,
        }
        if not suppressed:
            report.update({name: noisy[name][row] for name in MEASURES})
        report.update(epsilon=settings.ads_report_epsilon, delta=0, released_at=released_at)
        reports.append(report)
    return reports


def report_key(campaign_id: str, day: str) -> bytes:
    """The key of a campaign's day on ``shop.ads.reports`` (compacted: one report each)."""
    return f"{campaign_id}|{day}".encode()


def _noisy(parts: list[ReportPart], settings: Settings) -> dict[str, list[Any]]:
    """Each measure over the campaigns, with noise, clamped at 0 and rounded."""
    epsilons = dict(
        zip(MEASURES, equal_shares(settings.ads_report_epsilon, len(MEASURES)), strict=True)
    )
    most = settings.ads_report_max_campaigns
    bounds = {"users": 1, "impressions": settings.ads_frequency_cap, "clicks": 1, "purchases": 1}
    noisy: dict[str, list[Any]] = {}
    for name, bound in bounds.items():
        counts = np.array([getattr(part, name) for part in parts], dtype=np.int64)
        released = release_public_counts(counts, max_keys=most * bound, epsilon=epsilons[name])
        noisy[name] = [max(0, int(count)) for count in released]
    spend = release_sums(
        [part.spend for part in parts],
        l1=most * settings.ads_report_max_spend,
        epsilon=epsilons["spend"],
    )
    noisy["spend"] = [round(max(0.0, value), 2) for value in spend]
    return noisy


def equal_shares(epsilon: float, n: int) -> list[float]:
    """``epsilon`` cut into ``n`` about equal parts whose sum is at most it.

    Examples:
        >>> shares = equal_shares(1.0, 5)
        >>> [round(share, 6) for share in shares], sum(map(Fraction, shares)) <= 1
        ([0.2, 0.2, 0.2, 0.2, 0.2], True)
    """
    shares = []
    rest = epsilon
    for left in range(n, 1, -1):
        share, rest = split_epsilon(rest, Fraction(1, left))
        shares.append(share)
    return [*shares, rest]
