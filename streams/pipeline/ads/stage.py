"""The sponsored-items stage of a batch: charges as events arrive, auctions as answers leave.

:meth:`AdsStage.charge` attributes each view, click or purchase to the shopper's
recent impressions as the event is applied; :meth:`AdsStage.place` runs the
auctions of the batch's answers (the calibrated probabilities in one call per
calibrator); :meth:`AdsStage.finish` turns the batch's impressions and charges
into spend records, one per campaign and day. With no slot or no campaign it does
nothing but count, and the ranker is not asked for deeper lists.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from model.calibration import ClickCalibrator
from model.serving.ranker import Ranked
from streams.metrics.stats import BatchStats
from streams.pipeline.ads.auction import Candidate, blend, run_auction
from streams.pipeline.ads.campaigns import Campaign, CampaignBook
from streams.pipeline.ads.memory import AdsMemory, MemoryLimits
from streams.pipeline.ads.spend import SECONDS_PER_DAY, SpendBook, SpendTally, day_number
from streams.pipeline.records import OutputRecord
from streams.pipeline.state import UserState
from streams.settings import Settings

#: Event types that can follow an impression: a view or click of the item, or its purchase.
ATTRIBUTED = frozenset({"view", "click", "purchase"})

#: An eligible campaign's item in one answer: (campaign, item, model score, 0-based rank).
Eligible = tuple[Campaign, str, float, int]


@dataclass(frozen=True, slots=True)
class AdsRules:
    """How answers get sponsored items (the ``ads_*`` settings)."""

    slots: int
    depth: int
    min_click_probability: float
    reserve: float
    top_k: int
    spend_topic: str
    limits: MemoryLimits

    @classmethod
    def from_settings(cls, settings: Settings) -> AdsRules:
        """The rules the settings give."""
        return cls(
            slots=settings.ads_slots,
            depth=settings.ads_depth,
            min_click_probability=settings.ads_min_click_probability,
            reserve=settings.ads_reserve_price,
            top_k=settings.top_k,
            spend_topic=settings.ads_spend_topic,
            limits=MemoryLimits(
                frequency_cap=settings.ads_frequency_cap,
                attribution_seconds=settings.ads_attribution_seconds,
                report_max_campaigns=settings.ads_report_max_campaigns,
                report_max_spend=settings.ads_report_max_spend,
                future_seconds=settings.ts_future_tolerance_seconds,
            ),
        )


@dataclass(frozen=True, slots=True)
class Shopper:
    """What the auction of one answer needs of its event and user."""

    state: UserState
    ts: float
    item: str | None
    query: str | None
    category: str | None
    purchase_intent: float
    erased_before_ms: int


@dataclass(frozen=True, slots=True)
class Sponsored:
    """An answer with sponsored items: the blended list, and each sponsored item's campaign."""

    answer: Ranked
    campaigns: dict[str, str]


class AdsStage:
    """Charges, auctions and spend of a batch; ``campaigns`` and ``spend`` are kept by the feeds."""

    def __init__(self, rules: AdsRules, *, campaigns: CampaignBook, spend: SpendBook) -> None:
        self.rules = rules
        self.campaigns = campaigns
        self.spend = spend
        self._tally = SpendTally()

    @property
    def depth(self) -> int:
        """How deep the answers must be ranked: 0 while no sponsored item can be placed."""
        return self.rules.depth if self.rules.slots and len(self.campaigns) else 0

    def charge(self, state: UserState, event: dict[str, Any], *, erased_before_ms: int) -> None:
        """Attribute a view, click or purchase to the shopper's recent impressions, if any."""
        memory, kind = state.ads, event["type"]
        if memory is None or kind not in ATTRIBUTED:
            return
        delta = memory.attribute(
            str(event["item_id"]),
            purchase=kind == "purchase",
            ts=float(event["ts"]),
            limits=self.rules.limits,
            erased_before_ms=erased_before_ms,
        )
        if delta is not None:
            self._tally.add(delta)

    def skip(self, answers: int, stats: BatchStats) -> None:
        """Count the outcome of ``answers`` that held no auction: no slot, no campaign, or
        (with both) no scorer with a calibrator."""
        if not self.rules.slots:
            _count(stats.ads_auctions, "disabled", answers)
            return
        stats.ads_slots_offered += self.rules.slots * answers
        _count(
            stats.ads_auctions, "uncalibrated" if len(self.campaigns) else "no_candidate", answers
        )

    def place(
        self,
        shoppers: Sequence[Shopper],
        answers: Sequence[Ranked],
        calibrators: Mapping[str, ClickCalibrator | None],
        stats: BatchStats,
    ) -> list[Sponsored | None]:
        """Each answer's sponsored items (None: none), its outcome counted in ``stats``.

        Only while :attr:`depth` is not 0, with answers ranked that deep.
        ``calibrators`` maps a model version to its scorer's calibrator: an answer
        whose scorer has none gets no sponsored item.
        """
        placed: list[Sponsored | None] = [None] * len(answers)
        outcomes = stats.ads_auctions
        stats.ads_slots_offered += self.rules.slots * len(answers)
        found: list[tuple[int, ClickCalibrator, list[Eligible]]] = []
        opens: dict[int, dict[str, float]] = {}  # pacing, read once a day and campaign
        for row, (shopper, answer) in enumerate(zip(shoppers, answers, strict=True)):
            calibrator = calibrators.get(answer.model_version)
            if calibrator is None:
                _count(outcomes, "uncalibrated")
                continue
            eligible, outcome = self._eligible(shopper, answer, opens)
            if eligible:
                found.append((row, calibrator, eligible))
            else:
                _count(outcomes, outcome)
        probabilities = _probabilities(found, shoppers)
        for (row, _, eligible), (clicks, paid) in zip(found, probabilities, strict=True):
            outcome, placed[row] = self._auction(
                shoppers[row], answers[row], eligible, clicks, paid
            )
            _count(outcomes, outcome)
        return placed

    def finish(self, stats: BatchStats, *, now: float) -> list[OutputRecord]:
        """The batch's spend records (one per campaign and day), added to the book at once."""
        records = []
        for delta in self._tally.deltas.values():
            stats.ads_impressions += delta.impressions
            stats.ads_clicks += delta.clicks
            stats.ads_purchases += delta.purchases
            stats.ads_spend += delta.spend
            self.spend.add(delta)
            value = delta.to_json(worker=self.spend.worker_id, ts=now)
            records.append(OutputRecord(self.rules.spend_topic, delta.campaign_id.encode(), value))
        self._tally = SpendTally()
        return records

    def _eligible(
        self, shopper: Shopper, answer: Ranked, opens: dict[int, dict[str, float]]
    ) -> tuple[list[Eligible], str]:
        """The campaigns' items of the answer's deep list that may bid, or why there are none.

        A campaign may bid when it is active, its targeting matches, its bid reaches
        the reserve and pacing lets it in (``opens``: the batch's
        :meth:`SpendBook.opens_at` so far, by day and campaign). The item the shopper
        is looking at is not advertised to them: its next view would be charged as a
        click on the ad.
        """
        ts, reserve = shopper.ts, self.rules.reserve
        day = day_number(ts)
        elapsed = ts / SECONDS_PER_DAY - day
        opens_today = opens.setdefault(day, {})
        eligible: list[Eligible] = []
        matched = False
        deep = answer.items if answer.deep is None else answer.deep
        for rank, item, score, campaigns in self.campaigns.in_list(deep):
            if item == shopper.item:
                continue
            for campaign in campaigns:
                if not (
                    campaign.amount >= reserve
                    and campaign.active(ts)
                    and campaign.matches(
                        context=answer.context, query=shopper.query, category=shopper.category
                    )
                ):
                    continue
                matched = True
                opening = opens_today.get(campaign.campaign_id)
                if opening is None:
                    opening = opens_today[campaign.campaign_id] = self.spend.opens_at(campaign, day)
                if elapsed > opening:
                    eligible.append((campaign, item, score, rank))
        return eligible, "paced" if matched else "no_candidate"

    def _auction(
        self,
        shopper: Shopper,
        answer: Ranked,
        eligible: list[Eligible],
        clicks: list[float],
        paid: list[float],
    ) -> tuple[str, Sponsored | None]:
        """One answer's auction over its eligible items: its outcome and sponsored answer.

        ``clicks`` and ``paid`` are each item's P(click) and P(what its bid pays for).
        """
        rules = self.rules
        memory = shopper.state.ads if shopper.state.ads is not None else AdsMemory()
        memory.roll(shopper.ts)
        allowed = memory.may_show([e[0].campaign_id for e in eligible], rules.limits.frequency_cap)
        uncapped = [i for i, may in enumerate(allowed) if may]
        if not uncapped:
            return "capped", None
        candidates = [
            Candidate(
                eligible[i][0],
                eligible[i][1],
                eligible[i][2],
                paid[i],
                eligible[i][0].amount * paid[i],
            )
            for i in uncapped
            if clicks[i] >= rules.min_click_probability and paid[i] > 0
        ]
        if not candidates:
            return "below_floor", None
        winners = run_auction(candidates, slots=rules.slots, reserve=rules.reserve)
        items, shown = blend(answer.items, winners, top_k=rules.top_k)
        if not shown:
            return "no_candidate", None
        shopper.state.ads = memory
        for winner in shown:
            campaign = winner.campaign
            impression = memory.impress(
                campaign.campaign_id,
                winner.item,
                per=campaign.per,
                price=winner.price,
                ts=shopper.ts,
                limits=rules.limits,
                erased_before_ms=shopper.erased_before_ms,
            )
            self._tally.add(impression)
        sponsored = Ranked(items, answer.context, answer.model_version)
        return "filled", Sponsored(sponsored, {w.item: w.campaign.campaign_id for w in shown})


def _probabilities(
    found: Sequence[tuple[int, ClickCalibrator, list[Eligible]]], shoppers: Sequence[Shopper]
) -> list[tuple[list[float], list[float]]]:
    """Each answer's eligible items' P(click) and P(what the bid pays for).

    One call per calibrator for the whole batch: ranks and intents gathered into
    arrays, the answers' shares cut out after.
    """
    out: list[tuple[list[float], list[float]]] = [([], [])] * len(found)
    groups: dict[int, list[int]] = {}
    for index, (_, calibrator, _) in enumerate(found):
        groups.setdefault(id(calibrator), []).append(index)
    for indices in groups.values():
        calibrator = found[indices[0]][1]
        rows = [found[index] for index in indices]
        ranks = np.array([e[3] for _, _, eligible in rows for e in eligible], dtype=np.int64)
        intents = np.array(
            [shoppers[row].purchase_intent for row, _, eligible in rows for _ in eligible]
        )
        per_purchase = np.array(
            [e[0].per == "purchase" for _, _, eligible in rows for e in eligible]
        )
        clicks = calibrator.probabilities(ranks)
        paid = np.where(per_purchase, calibrator.purchase_probabilities(ranks, intents), clicks)
        bounds = np.cumsum([0, *(len(eligible) for _, _, eligible in rows)]).tolist()
        click_list, paid_list = clicks.tolist(), paid.tolist()
        for index, start, end in zip(indices, bounds, bounds[1:], strict=False):
            out[index] = (click_list[start:end], paid_list[start:end])
    return out


def _count(outcomes: dict[str, int], outcome: str, n: int = 1) -> None:
    outcomes[outcome] = outcomes.get(outcome, 0) + n
