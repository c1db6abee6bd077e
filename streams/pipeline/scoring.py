"""Stages 5 and 6 of a batch: its accepted events ranked in one call, sponsored items placed
in their answers, and the recommendations built."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from model.calibration import ClickCalibrator
from model.serving.ranker import ContextRanker, Ranked, RankRequest
from streams.pipeline.ads.stage import AdsStage, Shopper, Sponsored
from streams.pipeline.answers import Answers
from streams.pipeline.records import InputRecord
from streams.pipeline.result import BatchResult
from streams.pipeline.state import EMITTED_KEPT, UserState
from streams.pipeline.working_set import WorkingSet

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Pending:
    """An accepted event waiting to be scored; ``stamped_ms``: its broker time in ms."""

    record: InputRecord
    stamped_ms: int
    event: dict[str, Any]
    user: bytes
    state: UserState
    request: RankRequest
    purchase_intent: float


#: Events whose scoring raised, each with what it raised.
Failed = list[tuple[Pending, Exception]]


class Scoring:
    """Ranks pending events in one call and answers them, sponsored items included."""

    def __init__(self, *, ranker: ContextRanker, answers: Answers, ads: AdsStage) -> None:
        self.ranker = ranker
        self.answers = answers
        self.ads = ads

    def __call__(
        self, pending: Sequence[Pending], states: WorkingSet, result: BatchResult
    ) -> Failed:
        """Score the pending events and add their recommendations to ``result``.

        Should the call fail, each event is scored alone; the ones that still fail are
        returned, for the DLQ: an event that breaks the scorer costs only its own answer.
        """
        if not pending:
            return []
        calibrators = self._calibrators()
        depth = self.ads.depth if calibrators else 0
        started = time.perf_counter()
        answered, failed = self._rank(pending, depth=depth)
        result.stats.scoring_seconds += time.perf_counter() - started
        if depth:
            placed = self._place(answered, calibrators, states, result)
        else:
            self.ads.skip(len(answered), result.stats)
            placed = [None] * len(answered)
        self._answer(answered, placed, states, result)
        return failed

    def _calibrators(self) -> dict[str, ClickCalibrator]:
        """The answering scorers' calibrators by version, while sponsored items can be placed.

        Empty with no slot or no campaign, or when no scorer has one (the stream
        baseline alone): then no auction is held and lists are not ranked deeper.
        """
        if not self.ads.depth:
            return {}
        scorers = (self.ranker.fallback, self.ranker.primary)
        return {s.version: s.calibrator for s in scorers if s.calibrator is not None}

    def _rank(
        self, pending: Sequence[Pending], *, depth: int
    ) -> tuple[list[tuple[Pending, Ranked]], Failed]:
        requests = [p.request for p in pending]
        try:
            ranked = self.ranker.rank_many(requests, depth=depth)
            return list(zip(pending, ranked, strict=True)), []
        except Exception:
            log.exception("scoring %d events failed; scoring them one by one", len(pending))
        answered, failed = [], []
        for waiting in pending:
            try:
                answered.append((waiting, self.ranker.rank_many([waiting.request], depth=depth)[0]))
            except Exception as exc:
                failed.append((waiting, exc))
        return answered, failed

    def _place(
        self,
        answered: list[tuple[Pending, Ranked]],
        calibrators: Mapping[str, ClickCalibrator],
        states: WorkingSet,
        result: BatchResult,
    ) -> Sequence[Sponsored | None]:
        """The sponsored items of each answer (None: none)."""
        shoppers = [
            Shopper(
                state=waiting.state,
                ts=float(waiting.event["ts"]),
                item=waiting.event.get("item_id"),
                query=waiting.request.query,
                category=waiting.event.get("category"),
                purchase_intent=waiting.purchase_intent,
                erased_before_ms=states.erased_before_ms(waiting.user),
            )
            for waiting, _ in answered
        ]
        answers = [answer for _, answer in answered]
        return self.ads.place(shoppers, answers, calibrators, result.stats)

    def _answer(
        self,
        answered: list[tuple[Pending, Ranked]],
        placed: Sequence[Sponsored | None],
        states: WorkingSet,
        result: BatchResult,
    ) -> None:
        """The recommendations, and each user's latest list.

        The prequential check compares the user's next event with the model's own
        list, so sponsored items never move the model's quality or its probation.
        """
        now = self.answers.clock()
        latencies = result.stats.latencies
        out = result.recommendations
        latest = result.latest
        for (waiting, answer), sponsored in zip(answered, placed, strict=True):
            waiting.state.last_emitted = [item for item, _ in answer.items[:EMITTED_KEPT]]
            waiting.state.last_version = answer.model_version
            latency_s = max(0.0, now - waiting.record.timestamp)
            latencies.append(latency_s)
            recommendation, body = self.answers.recommendation(
                waiting.event,
                answer if sponsored is None else sponsored.answer,
                purchase_intent=waiting.purchase_intent,
                now=now,
                latency_s=latency_s,
                sponsored=None if sponsored is None else sponsored.campaigns,
            )
            out.append(recommendation)
            user = waiting.user
            previous = latest.get(user)
            # An event answered before its user's erasure later in this batch leaves no list.
            if (
                previous is None
                or previous[1] is not None
                or waiting.stamped_ms > states.erased_before_ms(user)
            ):
                latest[user] = (waiting.record.partition, body)
        result.stats.recommendations = len(out)
