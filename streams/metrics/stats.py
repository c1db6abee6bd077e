"""The statistics a worker's pipeline and the learner hand to their metrics.

Plain values, no Prometheus: the pipeline fills a :class:`BatchStats` per batch and
the learner a :class:`LearnerStats` per poll, and their metrics objects record them.
So the metrics read nothing of the pipeline's or the learner's internals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from online_learning.prequential import LogLossSnapshot, RankingSnapshot


@dataclass(slots=True)
class BatchStats:
    """What one batch of the worker's pipeline did.

    Totals marked cumulative run over the worker's life; the rest are this batch's.
    """

    records: int = 0
    events_by_type: dict[str, int] = field(default_factory=dict)
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    recommendations: int = 0
    erased: int = 0
    #: Events and bad records stamped at or before their user's erasure: dropped unread.
    erased_records: int = 0
    redelivered: int = 0
    unreadable_states: int = 0
    drifts: int = 0
    #: Seconds from each answered record's broker timestamp to its recommendation.
    latencies: list[float] = field(default_factory=list)
    #: Seconds spent ranking (the scorer's calls).
    scoring_seconds: float = 0.0
    #: Cumulative: epsilon charged to users' budgets, refused contributions, DP releases.
    epsilon_charged: float = 0.0
    budget_refusals: int = 0
    dp_releases: int = 0
    online: RankingSnapshot | None = None
    intent_log_loss: dict[str, LogLossSnapshot] = field(default_factory=dict)
    serving_version: str = ""
    #: Its per-session ε: ``inf`` when not DP-trained, NaN for the stream baseline.
    serving_epsilon: float = math.nan
    #: Sponsored items: each answer's auction by outcome ("filled", "no_candidate",
    #: "below_floor", "paced", "capped", "uncalibrated", "disabled"), the slots the
    #: auctions offered, impressions shown, clicks and purchases attributed to them,
    #: and what was charged.
    ads_auctions: dict[str, int] = field(default_factory=dict)
    ads_slots_offered: int = 0
    ads_impressions: int = 0
    ads_clicks: int = 0
    ads_purchases: int = 0
    ads_spend: float = 0.0


@dataclass(frozen=True, slots=True)
class LearnerStats:
    """The learner's running totals and online quality after one poll."""

    examples: int
    updates: int
    published: int
    drifts: int
    online: RankingSnapshot
    #: DP-SGD epsilon spent by the learner's updates (0 when DP-SGD is off).
    epsilon: float
    #: False once the DP lifetime cap stopped the updates (it still checks and serves).
    learning: bool = True
