"""Each shopper's sponsored items of the day, kept in their sealed state (``UserState.ads``).

Only here are impressions tied to a shopper: their frequency caps, the recent
impressions a click or purchase is charged to, and what they added to each
campaign's report today. What leaves the state is a :class:`SpendDelta` per charge
or impression, with no user id, whose ``report`` part is bounded per shopper, day
and campaign (docs/privacy.md): at most ``report_max_campaigns`` campaigns, and per
campaign 1 user, ``frequency_cap`` impressions, 1 click, 1 purchase and
``report_max_spend`` spend. An erasure deletes this memory with the state, so a
shopper erased on or after the start of a day adds nothing more to that day's
reports: what they added before is forgotten, and adding again could pass the bound.

A day is the UTC day of event time. The memory never goes back a day: a late event
counts in the current one, as the DP windows do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from streams.pipeline.ads.campaigns import Per
from streams.pipeline.ads.spend import SECONDS_PER_DAY, ReportPart, SpendDelta, day_name, day_number

#: Most recent impressions kept for attribution (the state stays small).
RECENT_KEPT = 20
#: Most campaigns one shopper is shown in a day: the caps must stay in a small state.
CAMPAIGNS_PER_DAY = 200

# Fields of a recent impression: [campaign id, item, per, price, ts, clicked (0/1)].
_CAMPAIGN, _ITEM, _PER, _PRICE, _TS, _CLICKED = range(6)


@dataclass(frozen=True, slots=True)
class MemoryLimits:
    """The settings the memory applies (``ads_*``; ``future_seconds``: the event-time tolerance).

    Examples:
        >>> limits = MemoryLimits(3, 1800.0, 4, 10.0, future_seconds=300.0)
        >>> limits.may_report(-1, day=19_700), limits.may_report(19_700 * 86_400_000, day=19_700)
        (True, False)
    """

    frequency_cap: int
    attribution_seconds: float
    report_max_campaigns: int
    report_max_spend: float
    future_seconds: float

    def may_report(self, erased_before_ms: int, *, day: int) -> bool:
        """Whether a shopper whose last erasure was at ``erased_before_ms`` may add to ``day``.

        An event applied before the erasure may be stamped up to ``future_seconds``
        after it, so it may have added to a day starting that much after the erasure.
        """
        erased = erased_before_ms / 1000.0 + self.future_seconds
        return erased_before_ms < 0 or erased < day * SECONDS_PER_DAY


@dataclass(slots=True)
class AdsMemory:
    """One shopper's sponsored items: today's caps and report shares, recent impressions.

    Attributes:
        day: day number (:func:`day_number`) of ``shown`` and ``report``.
        shown: impressions today per campaign id (the frequency cap).
        recent: impressions within the attribution window, oldest first, each
            ``[campaign id, item, per, price, ts, clicked]``.
        report: today's report share per campaign id, ``[impressions, clicks,
            purchases, spend]`` (the user count is its presence).
    """

    day: int = 0
    shown: dict[str, int] = field(default_factory=dict)
    recent: list[list[Any]] = field(default_factory=list)
    report: dict[str, list[Any]] = field(default_factory=dict)

    def to_list(self) -> list[Any]:
        """Compact form for the user's orjson state."""
        return [self.day, self.shown, self.recent, self.report]

    @classmethod
    def from_list(cls, raw: list[Any]) -> AdsMemory:
        """Inverse of :meth:`to_list`.

        Raises:
            ValueError: ``raw`` does not have the four parts.
        """
        if len(raw) != 4:
            raise ValueError(f"ads memory needs 4 parts, got {len(raw)}")
        return cls(*raw)

    def roll(self, ts: float) -> int:
        """Move to the day of event time ``ts`` (never back); the memory's day.

        Call it before :meth:`may_show` and :meth:`impress`.
        """
        day = day_number(ts)
        if day > self.day:
            self.day, self.shown, self.report = day, {}, {}
        return self.day

    def may_show(self, campaign_ids: Sequence[str], cap: int) -> list[bool]:
        """For each campaign, whether the shopper may see it again today.

        Not once they saw it ``cap`` times, nor a new one once they saw
        :data:`CAMPAIGNS_PER_DAY` campaigns.
        """
        shown = self.shown
        if not shown:
            return [True] * len(campaign_ids)
        room = len(shown) < CAMPAIGNS_PER_DAY
        return [room if (n := shown.get(cid)) is None else n < cap for cid in campaign_ids]

    def impress(
        self,
        campaign_id: str,
        item: str,
        *,
        per: Per,
        price: float,
        ts: float,
        limits: MemoryLimits,
        erased_before_ms: int,
    ) -> SpendDelta:
        """Remember an impression shown at event time ``ts``; its count for the campaign's day."""
        self.shown[campaign_id] = self.shown.get(campaign_id, 0) + 1
        self._expire(ts, limits)
        self.recent.append([campaign_id, item, per, price, ts, 0])
        del self.recent[:-RECENT_KEPT]
        return self._delta(campaign_id, limits, erased_before_ms, impressions=1)

    def attribute(
        self,
        item: str,
        *,
        purchase: bool,
        ts: float,
        limits: MemoryLimits,
        erased_before_ms: int,
    ) -> SpendDelta | None:
        """The charge of a view or click (or a purchase) of ``item`` at event time ``ts``.

        Last touch: the latest impression of the item within the attribution window
        gets it. A view or click counts once per impression (every earlier impression
        of the item is marked clicked too, so reloading a page charges nothing more)
        and is charged when the bid is per click; a purchase counts once, ends those
        impressions, and is charged when the bid is per purchase. None: no impression
        of the item awaits this event.
        """
        self.roll(ts)
        self._expire(ts, limits)
        touched = [
            entry
            for entry in self.recent
            if entry[_ITEM] == item and entry[_TS] <= ts and (purchase or not entry[_CLICKED])
        ]
        if not touched:
            return None
        campaign_id, _, per, price, _, _ = touched[-1]
        if purchase:
            self.recent = [entry for entry in self.recent if entry[_ITEM] != item]
            charged = price if per == "purchase" else 0.0
            return self._delta(campaign_id, limits, erased_before_ms, purchases=1, spend=charged)
        for entry in touched:
            entry[_CLICKED] = 1
        charged = price if per == "click" else 0.0
        return self._delta(campaign_id, limits, erased_before_ms, clicks=1, spend=charged)

    def _expire(self, ts: float, limits: MemoryLimits) -> None:
        oldest = ts - limits.attribution_seconds
        if self.recent and self.recent[0][_TS] < oldest:
            self.recent = [entry for entry in self.recent if entry[_TS] >= oldest]

    def _delta(
        self,
        campaign_id: str,
        limits: MemoryLimits,
        erased_before_ms: int,
        *,
        impressions: int = 0,
        clicks: int = 0,
        purchases: int = 0,
        spend: float = 0.0,
    ) -> SpendDelta:
        """The exact counts, and what the shopper's bounded share adds to the report."""
        delta = SpendDelta(campaign_id, day_name(self.day), impressions, clicks, purchases, spend)
        if limits.may_report(erased_before_ms, day=self.day):
            delta.report = self._share(campaign_id, limits, delta)
        return delta

    def _share(self, campaign_id: str, limits: MemoryLimits, delta: SpendDelta) -> ReportPart:
        """``delta`` cut to what the shopper may still add to the campaign's report today."""
        held = self.report.get(campaign_id)
        users = 0
        if held is None:
            if len(self.report) >= limits.report_max_campaigns:
                return ReportPart()
            held = self.report[campaign_id] = [0, 0, 0, 0.0]
            users = 1
        part = ReportPart(
            users,
            max(0, min(delta.impressions, limits.frequency_cap - held[0])),
            max(0, min(delta.clicks, 1 - held[1])),
            max(0, min(delta.purchases, 1 - held[2])),
            max(0.0, min(delta.spend, limits.report_max_spend - held[3])),
        )
        held[0] += part.impressions
        held[1] += part.clicks
        held[2] += part.purchases
        held[3] += part.spend
        return part
