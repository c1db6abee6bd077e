"""One batch of input records through the pipeline's stages, free of Faust and Kafka.

:meth:`EventPipeline.process` reads as its stages: validate, pseudonymise, load and
update each user's state, contribute to the DP shared counts, score, build the
outputs. It returns everything its caller must do (records to produce, table changes,
probation failures to record, statistics); it writes nothing itself.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from model.serving.ranker import ContextRanker, RankRequest
from model.serving.scorers import ItemScorer
from model.threshold import MICRO
from online_learning.intent import intent_cell
from streams.metrics.stats import BatchStats
from streams.pipeline.ads.stage import AdsStage
from streams.pipeline.answers import Answers, UserSeal
from streams.pipeline.crypto import StateCipher, pack_record
from streams.pipeline.identities import Checked, pseudonymise
from streams.pipeline.intent import IntentPredictor
from streams.pipeline.ledger import LedgerSealer
from streams.pipeline.monitor import OnlineMonitor, ProbationFailure
from streams.pipeline.pseudonyms import Pseudonymizer
from streams.pipeline.records import InputRecord
from streams.pipeline.result import BatchResult
from streams.pipeline.scoring import Pending, Scoring
from streams.pipeline.search import ReadOnlySearch
from streams.pipeline.shared_counts import SharedCounts
from streams.pipeline.state import TYPE_INDEX, UserState, apply_event
from streams.pipeline.validation import InputValidation, Reason, Rejection
from streams.pipeline.watermark import Watermark
from streams.pipeline.working_set import TableReader, WorkingSet

__all__ = ["BatchResult", "EventPipeline"]

log = logging.getLogger(__name__)


class EventPipeline:
    """Validates, pseudonymises, updates state, contributes to DP counts and scores a batch.

    The batch may also hold erasure requests (``shop.privacy.requests``). An erasure
    is ordered by broker time, not by the order records arrive in: it applies to
    every record of the user stamped at or before the request, and the user's
    ledger keeps that time, so such a record arriving later (another partition read
    first, lag, a crash and redelivery) is dropped unread. Records stamped after it
    start from empty state.

    The accepted events of a batch are scored in one call at its end (each with the
    history its user had at that event), their answers with their sponsored items.
    The stream baseline and the purchase rate change only when the shared counts
    make a DP release; the events before a release are scored just before it, so a
    batch gives exactly the recommendations the same events would get one by one.
    The prequential check of a user's second event in one batch compares it with the
    list sent before the batch.
    """

    def __init__(
        self,
        *,
        requests_topic: str,
        history_len: int,
        validate: InputValidation,
        pseudonyms: Pseudonymizer,
        cipher: StateCipher,
        ledgers: LedgerSealer,
        seen_every: float,
        shared: SharedCounts,
        watermark: Watermark,
        intent: IntentPredictor,
        monitor: OnlineMonitor,
        scoring: Scoring,
        search: ReadOnlySearch,
    ) -> None:
        self._requests_topic = requests_topic
        self._history_len = history_len
        self._validate = validate
        self._pseudonyms = pseudonyms
        self._cipher = cipher
        self._ledgers = ledgers
        self._seen_every = seen_every
        self.shared = shared
        self._watermark = watermark
        self.intent = intent
        self.monitor = monitor
        self.scoring = scoring
        #: The HTTP API's read-only search (``search.py``).
        self.search = search
        self.ranker: ContextRanker = scoring.ranker
        self.answers: Answers = scoring.answers
        #: The sponsored items' stage; its campaigns and spend are kept by the feeds.
        self.ads: AdsStage = scoring.ads
        self.campaigns = self.ads.campaigns
        self.spend = self.ads.spend
        self._previous: ItemScorer = self.ranker.primary

    def use_scorer(self, scorer: ItemScorer, *, probation: bool = False) -> None:
        """Score with ``scorer`` from the next batch on (hot swap; the baseline stays fallback).

        On ``probation``, once its first ``probation_events`` lists have been checked,
        a version whose online HR@10 fell more than ``probation_max_drop`` below the
        previous version's is swapped back out and reported in the batch's result.
        """
        if probation:
            self._previous = self.ranker.primary
            self.monitor.start_probation(scorer.version)
        self.ranker.primary = scorer

    def process(
        self, records: Sequence[InputRecord], *, read_state: TableReader, read_key: TableReader
    ) -> BatchResult:
        """Handle one batch in record order.

        Args:
            records: consumed events and privacy requests, in offset order per partition.
            read_state: the ``user_state`` lookup (pseudonym -> sealed state or None).
            read_key: the ``user_keys`` lookup (pseudonym -> wrapped data key or None).

        Returns:
            The batch's outputs and changes; each user's state appears once, as of its
            last record.
        """
        result = BatchResult()
        self.intent.start_batch()
        self.shared.learn_finished()
        checked = [self._validate(r.topic, r.key, r.value, r.timestamp) for r in records]
        users, sessions = pseudonymise(
            records, checked, self._pseudonyms, requests_topic=self._requests_topic
        )
        states = WorkingSet(
            self._cipher,
            self._ledgers,
            read_state=read_state,
            read_key=read_key,
            restore=self.shared.restore,
            seen_every=self._seen_every,
        )
        pending: list[Pending] = []
        wall = self._hold_watermark(records, checked)
        for record, outcome, user, session in zip(records, checked, users, sessions, strict=True):
            try:
                home = states.foreign(user, record.partition) if user else None
                if home is not None:
                    # Sealed under the master-derived key: a ledger written here would
                    # be a second one for this user, on a partition that is not theirs.
                    user, outcome = b"", _elsewhere(record, home)
                if isinstance(outcome, Rejection):
                    self._reject(record, outcome, user, states, result)
                elif record.topic == self._requests_topic:
                    self._erase(record, outcome, user, states, result)
                else:
                    self._apply(record, outcome, user, session, states, result, pending, wall)
            except Exception as exc:  # a bug on odd input must not stop the worker
                log.exception("failed on %s[%d]@%d", record.topic, record.partition, record.offset)
                self._reject(record, _processing_error(exc), b"", states, result)
        self._score(pending, states, result)
        result.ad_spend = self.ads.finish(result.stats, now=wall)
        result.changes = states.changes()
        result.release_marks, self.shared.new_marks = self.shared.new_marks, {}
        self._finish_stats(result.stats, records=len(records), unreadable=states.unreadable)
        return result

    def _hold_watermark(self, records: Sequence[InputRecord], checked: Sequence[Checked]) -> float:
        """Enter each partition's first event time of the batch into the watermark.

        So a partition that is behind holds the windows open before another partition's
        later events in the same batch can close them. Returns the batch's wall time.
        """
        wall = self.answers.clock()
        first: dict[int, float] = {}
        for record, outcome in zip(records, checked, strict=True):
            if not isinstance(outcome, Rejection) and record.topic != self._requests_topic:
                first.setdefault(record.partition, float(outcome["ts"]))
        for partition, event_time in first.items():
            self._watermark.observe(partition, event_time, wall=wall)
        return wall

    def _reject(
        self,
        record: InputRecord,
        rejection: Rejection,
        user: bytes,
        states: WorkingSet,
        result: BatchResult,
    ) -> None:
        """Dead-letter ``record``: under its user's key when it names one, unless erased."""
        user_seal: UserSeal | None = None
        if user:
            if _millis(record.timestamp) <= states.erased_before_ms(user):
                result.stats.erased_records += 1
                return

            def seal(key: bytes | None, value: bytes | None) -> bytes:
                return states.seal_dead_letter(user, record.partition, pack_record(key, value))

            user_seal = (user, seal)
        result.dead_letters.append(self.answers.dead_letter(record, rejection, user_seal=user_seal))
        by_reason = result.stats.rejected_by_reason
        by_reason[rejection.reason] = by_reason.get(rejection.reason, 0) + 1

    def _erase(
        self,
        record: InputRecord,
        request: dict[str, Any],
        user: bytes,
        states: WorkingSet,
        result: BatchResult,
    ) -> None:
        """Erase the user's state and key as of the request's broker time; audit the outcome.

        A request applied before (a redelivery) changes nothing and is audited ``no_state``.
        """
        existed = states.erase(user, record.partition, requested_ms=_millis(record.timestamp))
        result.stats.erased += 1
        if existed is not None:  # a redelivered request leaves later lists alone
            result.latest[user] = (record.partition, None)
        result.audit.append(self.answers.audit(record, request, existed=bool(existed)))

    def _apply(
        self,
        record: InputRecord,
        event: dict[str, Any],
        user: bytes,
        session: str,
        states: WorkingSet,
        result: BatchResult,
        pending: list[Pending],
        wall: float,
    ) -> None:
        """Update the user's state, check and contribute, and queue the event for scoring.

        ``wall`` is the batch's wall-clock time, for the watermark (``watermark.py``).

        The agent sends a batch's recommendations before its changelog records, so a
        state that already holds this event's offset means its recommendation reached
        the broker: a redelivered event is not answered again (at-least-once in,
        effectively once out; docs/reliability.md). An event stamped at or before the
        user's erasure is dropped unread.
        """
        stamped_ms = _millis(record.timestamp)
        erased_ms = states.erased_before_ms(user)
        if stamped_ms <= erased_ms:
            result.stats.erased_records += 1
            return
        kind, now = event["type"], float(event["ts"])
        state = states.get(user, now)
        previous_item = state.items[-1] if state.items else None
        previous_cell = (
            intent_cell(state.last_type, state.session_events, state.session_carts)
            if state.last_type >= 0
            else None
        )
        fresh = apply_event(
            state,
            event,
            session=session,
            partition=record.partition,
            offset=record.offset,
            history_len=self._history_len,
        )
        stats = result.stats
        if not fresh:
            stats.redelivered += 1
            return
        stats.events_by_type[kind] = stats.events_by_type.get(kind, 0) + 1
        self._check(state, event.get("item_id"), result)
        self.ads.charge(state, event, erased_before_ms=erased_ms)
        # Answered only once the batch is scored: the user's next event in this batch
        # came before that answer, so no list of theirs is checked against it. A
        # replay compresses a shopper's minutes into milliseconds; without this a
        # slower model, fetching larger batches, would be judged on stale lists.
        state.last_emitted = []
        self.intent.evaluate(state.last_intent, purchased=kind == "purchase")
        self.shared.contribute(
            state,
            item=event.get("item_id"),
            previous_item=previous_item,
            previous_cell=previous_cell,
            current_type=TYPE_INDEX[kind],
            now=now,
            partition=record.partition,
        )
        states.changed(user, record.partition, seen=record.timestamp)
        watermark = self._watermark.observe(record.partition, now, wall=wall)
        if self.shared.due(watermark):
            # The baseline and the purchase rate are about to learn a DP release: the
            # events before this one are answered by what they would have met.
            self._score(pending, states, result)
            pending.clear()
            self.shared.advance(watermark)
        query = event.get("query") if kind == "search" else None
        pending.append(
            Pending(
                record=record,
                stamped_ms=stamped_ms,
                event=event,
                user=user,
                state=state,
                request=RankRequest(history=tuple(state.items), query=query),
                purchase_intent=round(self.intent.predict(state), 6),
            )
        )

    def _check(self, state: UserState, item: str | None, result: BatchResult) -> None:
        """Prequential check of the user's last list; a failed probation swaps back."""
        check = self.monitor.check(state, item)
        if check.drifted:
            result.stats.drifts += 1
        if check.failed is None:
            return
        version, reason = check.failed
        restored = self._previous
        log.error("model %s failed probation, back to %s: %s", version, restored.version, reason)
        self.ranker.primary = restored
        result.probation_failures.append(ProbationFailure(version, restored.version, reason))

    def _score(self, pending: Sequence[Pending], states: WorkingSet, result: BatchResult) -> None:
        """Score and answer the pending events; those the scorer fails on go to the DLQ."""
        for waiting, exc in self.scoring(pending, states, result):
            self._reject(waiting.record, _processing_error(exc), waiting.user, states, result)

    def _finish_stats(self, stats: BatchStats, *, records: int, unreadable: int) -> None:
        """Add the batch size and the cumulative figures the metrics show."""
        stats.records = records
        stats.unreadable_states = unreadable
        stats.epsilon_charged = self.shared.charged_units / MICRO
        stats.budget_refusals = self.shared.refused
        stats.dp_releases = self.shared.released_windows
        stats.online = self.monitor.snapshot()
        stats.intent_log_loss = self.intent.snapshots()
        stats.serving_version = self.ranker.primary.version
        stats.serving_epsilon = self.ranker.primary.epsilon


def _millis(timestamp: float) -> int:
    """A record's broker timestamp (seconds) back in the broker's milliseconds."""
    return round(timestamp * 1000.0)


def _elsewhere(record: InputRecord, home: int) -> Rejection:
    """The rejection of a user's record that arrived on another partition than theirs."""
    return Rejection(
        Reason.KEY_MISMATCH,
        f"this user's records arrive on partition {home}, this one on {record.partition}: "
        "produce every input topic keyed by user id with one partitioner",
    )


def _processing_error(exc: Exception) -> Rejection:
    """The rejection of a record whose handling raised ``exc``."""
    return Rejection(Reason.PROCESSING_ERROR, f"{type(exc).__name__}: {exc}"[:200])
