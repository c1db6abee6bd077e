"""Online monitoring of what the worker serves: prequential quality, drift, probation.

Each event is first checked against the list its user was last sent ("test, then
train"): the hit feeds the online HR@10 / NDCG@10, the drift detector on the miss
rate, and the probation of a newly swapped-in model version. A version that fails
its probation is reported as a :class:`ProbationFailure`; the pipeline swaps back
and hands the failure to its caller, which records it in the model store.
"""

from __future__ import annotations

from dataclasses import dataclass

from online_learning.drift import DriftMonitor
from online_learning.prequential import PrequentialRanking, RankingSnapshot
from online_learning.probation import Probation
from streams.pipeline.state import EMITTED_KEPT, UserState


@dataclass(frozen=True, slots=True)
class ProbationFailure:
    """A model version rejected on probation, and the version serving again instead."""

    version: str
    restored: str
    reason: str


@dataclass(frozen=True, slots=True)
class Check:
    """What one event's prequential check found."""

    drifted: bool
    #: The version on probation that has just failed it, and why.
    failed: tuple[str, str] | None


NOTHING = Check(drifted=False, failed=None)


class OnlineMonitor:
    """Prequential quality, drift detection and probation over the served lists."""

    def __init__(self, *, probation_events: int, probation_max_drop: float) -> None:
        self.prequential = PrequentialRanking(k=EMITTED_KEPT)
        self.drift = DriftMonitor()
        self.probation = Probation(events=probation_events, max_drop=probation_max_drop)

    def start_probation(self, version: str) -> None:
        """Judge ``version`` against the online HR@10 served so far."""
        self.probation.start(version, baseline_hr=self.prequential.snapshot().window_hr)

    def check(self, state: UserState, item: str | None) -> Check:
        """Was ``item`` in the user's last list? Checked before anything learns from it."""
        score = self.prequential.update_one(state.last_emitted or None, item)
        if score is None:
            return NOTHING
        drifted = self.drift.update(1.0 - score.hit)
        verdict = self.probation.observe(state.last_version, score.hit)
        if verdict is None or verdict.accepted:
            return Check(drifted=drifted, failed=None) if drifted else NOTHING
        return Check(drifted=drifted, failed=(state.last_version, verdict.reason))

    def snapshot(self) -> RankingSnapshot:
        """Online HR@10 / NDCG@10 now."""
        return self.prequential.snapshot()
