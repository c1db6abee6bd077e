"""What campaigns were shown and charged, per campaign and day, summed over every worker.

Each batch's charges and impressions leave a worker as :class:`SpendDelta` records
on ``shop.ads.spend`` (schema ``ads_spend.schema.json``); every worker adds its own
at once and the other workers' from the spend feed into its :class:`SpendBook`,
which paces campaigns over the day and gives the reports their totals. A delta's
``report`` holds only what each shopper's bounded contribution added
(``memory.py``): that, not the exact counts, is what the DP report releases.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import fastjsonschema
import orjson

from streams.pipeline.ads.campaigns import Campaign, CampaignBook
from streams.pipeline.validation import load_schema

SECONDS_PER_DAY = 86_400
#: Days of spend a book keeps: the spend topic's retention, enough for a late report.
DAYS_KEPT = 3


def day_number(ts: float) -> int:
    """Days since the epoch of the UTC day holding ``ts``."""
    return int(ts // SECONDS_PER_DAY)


@functools.lru_cache(maxsize=64)
def day_name(number: int) -> str:
    """A day number as ``YYYY-MM-DD`` (cached: every charge and auction names its day).

    Examples:
        >>> day_name(day_number(1700000000.0))
        '2023-11-14'
    """
    return datetime.fromtimestamp(number * SECONDS_PER_DAY, UTC).strftime("%Y-%m-%d")


@dataclass(slots=True)
class ReportPart:
    """Counts towards a campaign's DP report; each shopper's share is bounded (memory.py)."""

    users: int = 0
    impressions: int = 0
    clicks: int = 0
    purchases: int = 0
    spend: float = 0.0

    def add(self, other: ReportPart) -> None:
        """Add ``other``'s counts to these."""
        self.users += other.users
        self.impressions += other.impressions
        self.clicks += other.clicks
        self.purchases += other.purchases
        self.spend += other.spend


@dataclass(slots=True)
class SpendDelta:
    """What was added to one campaign's day: exact counts and spend, and the report's part."""

    campaign_id: str
    day: str
    impressions: int = 0
    clicks: int = 0
    purchases: int = 0
    spend: float = 0.0
    report: ReportPart = field(default_factory=ReportPart)

    def add(self, other: SpendDelta) -> None:
        """Add ``other`` (of the same campaign and day) to this one."""
        self.impressions += other.impressions
        self.clicks += other.clicks
        self.purchases += other.purchases
        self.spend += other.spend
        self.report.add(other.report)

    def to_json(self, *, worker: str, ts: float) -> bytes:
        """The record value on ``shop.ads.spend``, written by ``worker`` at ``ts``."""
        report = self.report
        return orjson.dumps(
            {
                "campaign_id": self.campaign_id,
                "day": self.day,
                "impressions": self.impressions,
                "clicks": self.clicks,
                "purchases": self.purchases,
                "spend": round(self.spend, 6),
                "report": {
                    "users": report.users,
                    "impressions": report.impressions,
                    "clicks": report.clicks,
                    "purchases": report.purchases,
                    "spend": round(report.spend, 6),
                },
                "worker": worker,
                "ts": round(ts, 6),
            }
        )

    @classmethod
    def from_json(cls, raw: bytes | None) -> tuple[str, SpendDelta]:
        """The worker that wrote a spend record, and its delta.

        Raises:
            ValueError: not JSON, or not valid under ``ads_spend.schema.json``.
        """
        value: dict[str, Any] = orjson.loads(raw or b"null")
        _spend_validator()(value)
        report = ReportPart(**value["report"])
        fields = {name: value[name] for name in ("impressions", "clicks", "purchases", "spend")}
        return value["worker"], cls(value["campaign_id"], value["day"], **fields, report=report)


@functools.cache
def _spend_validator() -> Any:
    return fastjsonschema.compile(load_schema("schemas/ads_spend.schema.json"))


class SpendTally:
    """Deltas merged per (day, campaign): a batch's, or a book's totals."""

    def __init__(self) -> None:
        self.deltas: dict[tuple[str, str], SpendDelta] = {}

    def add(self, delta: SpendDelta) -> None:
        """Merge ``delta`` in (a copy is kept, so the caller may reuse it)."""
        key = (delta.day, delta.campaign_id)
        held = self.deltas.get(key)
        if held is None:
            self.deltas[key] = replace(delta, report=replace(delta.report))
        else:
            held.add(delta)


class SpendBook:
    """Every worker's spend per campaign and day, for pacing, the overspend alert and reports.

    Args:
        worker_id: this process's random id, written into its spend records; the
            spend feed skips records that carry it (they were added at once).
        campaigns: the campaigns held, for their budgets.
        pacing_slack: share of its daily budget a campaign may spend ahead of even
            pacing over the day.

    Examples:
        >>> book = SpendBook("w1", campaigns=CampaignBook(max_campaigns=1), pacing_slack=0.1)
        >>> c1 = Campaign("c1", "acme", ("i1",), "click", 0.4, 10.0, 0.0, None)
        >>> book.add(SpendDelta("c1", "1970-01-01", clicks=2, spend=2.5))
        >>> book.may_serve(c1, 0.1 * 86_400), book.may_serve(c1, 0.2 * 86_400)
        (False, True)
    """

    def __init__(self, worker_id: str, *, campaigns: CampaignBook, pacing_slack: float) -> None:
        self.worker_id = worker_id
        self._campaigns = campaigns
        self._slack = pacing_slack
        self._totals = SpendTally()
        #: Spend by (day number, campaign id): what pacing reads for every candidate.
        self._spent: dict[tuple[int, str], float] = {}
        self._newest = -1

    def add(self, delta: SpendDelta) -> None:
        """Count a delta (this worker's at once, the others' from the spend feed)."""
        self._totals.add(delta)
        key = (_number_of(delta.day), delta.campaign_id)
        self._spent[key] = self._spent.get(key, 0.0) + delta.spend
        if key[0] > self._newest:
            self._newest = key[0]
            self._forget_before(key[0] - DAYS_KEPT + 1)

    def spent(self, campaign_id: str, day: str) -> float:
        """The campaign's spend on ``day`` as this worker knows it."""
        return self._spent.get((_number_of(day), campaign_id), 0.0)

    def may_serve(self, campaign: Campaign, now: float) -> bool:
        """Whether pacing lets the campaign into an auction at ``now`` (:meth:`opens_at`)."""
        number = day_number(now)
        return now / SECONDS_PER_DAY - number > self.opens_at(campaign, number)

    def opens_at(self, campaign: Campaign, day: int) -> float:
        """The share of day number ``day`` after which pacing lets the campaign in.

        Spend may run ``pacing_slack`` of the daily budget ahead of even spending over
        the day, and never past the budget: a campaign whose budget left cannot pay one
        more charge at its bid stops for the day (then: infinity), or one click could
        take it past its budget by up to a bid. Spend changes only between batches, so
        a batch may keep what this says.
        """
        spent = self._spent.get((day, campaign.campaign_id), 0.0)
        if spent + campaign.amount > campaign.daily_budget:
            return math.inf
        return spent / campaign.daily_budget - self._slack

    def overspent(self, now: float, tolerance: float) -> int:
        """Campaigns held whose spend today is above budget by more than ``tolerance`` of it."""
        return sum(spent > budget * (1.0 + tolerance) for _, spent, budget in self.today(now))

    def paced_out(self, now: float) -> int:
        """Active campaigns that pacing keeps out of auctions at ``now``."""
        return sum(c.active(now) and not self.may_serve(c, now) for c in self._campaigns)

    def today(self, now: float) -> list[tuple[str, float, float]]:
        """``(campaign id, spend today, daily budget)`` of every campaign held."""
        day = day_name(day_number(now))
        return [
            (c.campaign_id, self.spent(c.campaign_id, day), c.daily_budget) for c in self._campaigns
        ]

    def report_totals(self, day: str) -> dict[str, ReportPart]:
        """Each campaign's report part of ``day``, summed over every worker."""
        return {
            cid: replace(delta.report)
            for (held_day, cid), delta in self._totals.deltas.items()
            if held_day == day
        }

    def _forget_before(self, first_kept: int) -> None:
        cutoff = day_name(first_kept)
        deltas = self._totals.deltas
        for key in [key for key in deltas if key[0] < cutoff]:
            del deltas[key]
        for number, cid in [key for key in self._spent if key[0] < first_kept]:
            del self._spent[number, cid]


def day_start(day: str) -> float:
    """Epoch seconds at the start of a ``YYYY-MM-DD`` UTC day.

    Examples:
        >>> day_start("1970-01-02")
        86400.0
    """
    return datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()


@functools.lru_cache(maxsize=64)
def _number_of(day: str) -> int:
    """:func:`day_number` of a ``YYYY-MM-DD`` day (cached: every delta names one)."""
    return day_number(day_start(day))
