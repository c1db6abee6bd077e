"""Advertisers' DP reports: OpenDP noise at the stated epsilon and sensitivity, suppression."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

import fastjsonschema
import numpy as np
import pytest

from streams.pipeline.ads.campaigns import Campaign
from streams.pipeline.ads.reports import MEASURES, equal_shares, release_day, report_key
from streams.pipeline.ads.spend import ReportPart
from streams.pipeline.validation import load_schema
from streams.settings import Settings

DAY = "2023-11-14"
START = 19_675 * 86_400.0
SETTINGS = Settings(ads_report_epsilon=1.0, ads_report_min_users=20, ads_report_max_campaigns=4)


def _validate(report: dict[str, object]) -> None:
    fastjsonschema.compile(load_schema("schemas/ads_report.schema.json"))(report)


def test_a_campaign_seen_by_many_is_reported_with_noisy_counts(
    make_campaign: Callable[..., Campaign],
) -> None:
    part = ReportPart(users=5000, impressions=9000, clicks=700, purchases=90, spend=400.0)
    [report] = release_day({"c1": part}, [make_campaign("c1")], DAY, SETTINGS, released_at=9.5)
    _validate(report)
    assert report["suppressed"] is False
    assert (report["campaign_id"], report["advertiser"], report["day"]) == ("c1", "acme", DAY)
    assert (report["epsilon"], report["delta"], report["released_at"]) == (1.0, 0, 9.5)
    # Scales at epsilon 0.2 a measure: users 4 x 1 / 0.2 = 20, spend 4 x 10 / 0.2 = 200.
    assert abs(report["users"] - 5000) < 20 * 15  # type: ignore[operator]
    assert abs(report["spend"] - 400.0) < 200 * 15  # type: ignore[operator]
    assert all(isinstance(report[name], int) for name in MEASURES[:4])


def test_a_campaign_seen_by_few_is_suppressed_and_a_silent_one_reported_too(
    make_campaign: Callable[..., Campaign],
) -> None:
    totals = {"c1": ReportPart(users=1, impressions=3, clicks=1, purchases=1, spend=5.0)}
    campaigns = [make_campaign("c1"), make_campaign("c2")]
    reports = release_day(totals, campaigns, DAY, SETTINGS, released_at=1.0)
    assert [r["campaign_id"] for r in reports] == ["c1", "c2"]  # c2 spent nothing: still there
    for report in reports:
        _validate(report)
        # A noisy count of 1 (or 0) reaching 20 at scale 20: about 2 times in 5.
        if report["suppressed"]:
            assert not set(MEASURES) & set(report)


def test_suppression_follows_the_noisy_count_of_users(
    make_campaign: Callable[..., Campaign],
) -> None:
    many = Settings(ads_report_epsilon=1e6, ads_report_min_users=20)  # noise about 0
    part = ReportPart(users=19, impressions=19)
    [below] = release_day({"c1": part}, [make_campaign("c1")], DAY, many, released_at=1.0)
    part = ReportPart(users=20, impressions=20)
    [at] = release_day({"c1": part}, [make_campaign("c1")], DAY, many, released_at=1.0)
    assert below["suppressed"] is True and at["suppressed"] is False and at["users"] == 20


def test_only_campaigns_that_ran_that_day_are_reported(
    make_campaign: Callable[..., Campaign],
) -> None:
    campaigns = [
        make_campaign("before", start=0.0, end=START),  # ended at midnight
        make_campaign("after", start=START + 86_400),
        make_campaign("during", start=START + 3600, end=START + 7200),
        make_campaign("paused", paused=True),  # may have run earlier that day
    ]
    reports = release_day({}, campaigns, DAY, SETTINGS, released_at=1.0)
    assert [r["campaign_id"] for r in reports] == ["during", "paused"]
    assert release_day({}, [], DAY, SETTINGS, released_at=1.0) == []


def test_the_noise_has_the_scale_of_the_whole_days_sensitivity(
    make_campaign: Callable[..., Campaign],
) -> None:
    """A shopper may move ``max_campaigns`` campaigns' counts: the scale says so."""
    campaigns = [make_campaign(f"c{n}") for n in range(2000)]
    part = ReportPart(users=1000, impressions=1000, clicks=1000, purchases=1000, spend=1e5)
    totals = {c.campaign_id: part for c in campaigns}
    reports = release_day(totals, campaigns, DAY, SETTINGS, released_at=1.0)
    users = np.array([r["users"] for r in reports], dtype=float)
    impressions = np.array([r["impressions"] for r in reports], dtype=float)
    spend = np.array([r["spend"] for r in reports], dtype=float)
    # Laplace of scale b has standard deviation b * sqrt(2); each measure gets epsilon 0.2.
    for values, scale in ((users, 4 / 0.2), (impressions, 4 * 3 / 0.2), (spend, 4 * 10 / 0.2)):
        assert np.std(values) == pytest.approx(scale * np.sqrt(2), rel=0.1)
    assert len(set(users.tolist())) > 10  # noise, not a constant


def test_epsilon_is_split_equally_and_never_overspent() -> None:
    shares = equal_shares(0.7, 5)
    assert len(shares) == 5 and sum(map(Fraction, shares)) <= Fraction(0.7)
    assert max(shares) - min(shares) < 1e-9


def test_the_report_key_names_the_campaign_and_day() -> None:
    assert report_key("c1", DAY) == b"c1|2023-11-14"
