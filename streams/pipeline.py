"""The per-batch work of the scoring agent, free of Faust so it can be tested alone.

:meth:`EventPipeline.process` turns a batch of raw ``shop.events`` and
``shop.privacy.requests`` records into the records to produce (recommendations,
sealed dead letters, erasure audits) and the sealed table changes. The agent
only decodes, calls it, and sends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from model.baseline import CooccurrenceRecommender, NextPurchaseRate
from model.catalogue import TextCatalogue
from model.serving import ContextRanker, ItemScorer, QueryEncoder, RankerConfig, RankRequest
from online_learning.drift import DriftMonitor
from online_learning.intent import CellIntent, intent_cell
from online_learning.prequential import PrequentialLogLoss, PrequentialRanking
from online_learning.probation import Probation
from streams.crypto import RecordSealer, StateCipher
from streams.features import EMITTED_KEPT, EVENT_TYPES, TYPE_INDEX, UserFeatures, apply_event
from streams.pseudonym import Pseudonymizer
from streams.records import InputRecord, OutputRecord, dead_letter
from streams.settings import Settings
from streams.shared_counts import SharedCounts, SharingConfig
from streams.user_state import StateChanges, TableReader, UserStates
from streams.validation import PRIVACY_REQUEST_SCHEMA, Reason, RecordValidator, Rejection

log = logging.getLogger(__name__)

#: Told (version, reason) when a version on probation is rejected.
RejectHandler = Callable[[str, str], None]

#: Scored predictions of the river intent model before it may replace the purchase rate.
INTENT_TRIAL = 500

#: HKDF purpose of the key that seals the DLQ's copies of rejected records.
DLQ_PURPOSE = b"dead letters"


@dataclass(slots=True)
class BatchResult:
    """Everything one batch produces.

    ``changes`` holds the sealed user states and wrapped keys to write (None =
    tombstone), each with the partition of the record that changed it.
    """

    recommendations: list[OutputRecord] = field(default_factory=list)
    dead_letters: list[OutputRecord] = field(default_factory=list)
    audit: list[OutputRecord] = field(default_factory=list)
    changes: StateChanges = field(default_factory=StateChanges)
    redelivered: int = 0
    erased: int = 0
    drifts: int = 0
    unreadable_states: int = 0
    events_by_type: dict[str, int] = field(default_factory=dict)
    #: Seconds from each answered record's broker timestamp to its recommendation.
    latencies: list[float] = field(default_factory=list)
    #: Seconds spent ranking (the scorer's calls) in this batch.
    scoring_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class _Pending:
    """An accepted event waiting for its recommendation."""

    record: InputRecord
    event: dict[str, Any]
    state: UserFeatures
    request: RankRequest
    purchase_intent: float


class EventPipeline:
    """Validates, pseudonymises, updates features and scores a batch of events.

    The batch may also hold erasure requests (``shop.privacy.requests``): they
    are applied in order with the events, so an event after the request starts
    from empty state.

    The accepted events of a batch are ranked in one call at its end (each with
    the history its user had at that event). The stream-learned baseline and the
    purchase rate change only when :mod:`streams.shared_counts` releases a
    window (differential privacy); the events before a release are ranked just
    before it, so a batch gives exactly the recommendations the same events
    would get one by one. The baseline answers for users whose items the scorer
    does not know, and for everyone without a scorer. The prequential check of
    a user's second event in one batch compares it with the list sent before
    the batch.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        pseudonymizer: Pseudonymizer,
        master_key: bytes,
        clock: Callable[[], float] = time.time,
        scorer: ItemScorer | None = None,
        catalogue: TextCatalogue | None = None,
        encode_queries: QueryEncoder | None = None,
    ) -> None:
        self._settings = settings
        self._validators = {
            settings.events_topic: RecordValidator(max_bytes=settings.max_event_bytes),
            settings.privacy_requests_topic: RecordValidator(
                max_bytes=settings.max_event_bytes, schema=PRIVACY_REQUEST_SCHEMA
            ),
        }
        self._pseudonyms = pseudonymizer
        self._cipher = StateCipher(master_key)
        self.seal_dead_letter = RecordSealer(master_key, purpose=DLQ_PURPOSE).seal
        self._clock = clock
        self.recommender = CooccurrenceRecommender()
        self.intent = NextPurchaseRate(n_types=len(EVENT_TYPES))
        self.cell_intent = CellIntent()
        self.shared = SharedCounts(
            SharingConfig(
                budget_epsilon=settings.privacy_epsilon_per_window,
                epsilon=settings.shared_counts_epsilon,
                delta=settings.shared_counts_delta,
                max_items=settings.shared_counts_max_items,
                window_seconds=settings.privacy_window_seconds,
            ),
            recommender=self.recommender,
            intent=self.intent,
            cell_intent=self.cell_intent,
        )
        self.ranker = ContextRanker(
            self.recommender,
            fallback=self.recommender,
            catalogue=catalogue,
            encode_queries=encode_queries,
            config=RankerConfig(top_k=settings.top_k),
        )
        self.prequential = PrequentialRanking(k=EMITTED_KEPT)
        #: Prequential log-loss of the served intent's two sources.
        self.intent_loss = {"river": PrequentialLogLoss(), "rate": PrequentialLogLoss()}
        self.drift = DriftMonitor()
        self.probation = Probation(
            events=settings.probation_events, max_drop=settings.probation_max_drop
        )
        self._river_serves = False
        self._previous: ItemScorer = self.recommender
        self._on_reject: RejectHandler | None = None
        if scorer is not None:
            self.use_scorer(scorer)

    def use_scorer(self, scorer: ItemScorer, *, on_reject: RejectHandler | None = None) -> None:
        """Score with ``scorer`` from the next batch on (hot swap; the baseline stays fallback).

        With ``on_reject`` the new version serves on probation: once its first
        ``probation_events`` lists have been checked, if its online HR@10 fell
        more than ``probation_max_drop`` below the previous version's, the
        previous scorer comes back and ``on_reject(version, reason)`` is called.
        """
        if on_reject is not None:
            self._previous, self._on_reject = self.ranker.primary, on_reject
            self.probation.start(scorer.version, baseline_hr=self.prequential.snapshot().window_hr)
        self.ranker.primary = scorer

    def process(
        self, records: Sequence[InputRecord], *, read_state: TableReader, read_key: TableReader
    ) -> BatchResult:
        """Handle one batch in record order.

        Args:
            records: consumed events and privacy requests, in offset order per partition.
            read_state: the ``user_features`` lookup (pseudonym -> sealed state or None).
            read_key: the ``user_keys`` lookup (pseudonym -> wrapped data key or None).

        Returns:
            The outputs of the batch; each user's state appears once, as of its last record.
        """
        result = BatchResult()
        self._river_serves = self.river_serves()  # once per batch: it reads two windows
        checked = [self._check(record) for record in records]
        raw_ids = [
            self._raw_id(record, outcome) for record, outcome in zip(records, checked, strict=True)
        ]
        users = iter(self._pseudonyms.many(uid for uid in raw_ids if uid is not None))
        events_topic = self._settings.events_topic
        sessions = iter(
            self._pseudonyms.many(
                outcome.get("session_id", "")
                for record, outcome in zip(records, checked, strict=True)
                if record.topic == events_topic and isinstance(outcome, dict)
            )
        )
        states = UserStates(self._cipher, read_state=read_state, read_key=read_key)
        pending: list[_Pending] = []
        for record, outcome in zip(records, checked, strict=True):
            if isinstance(outcome, Rejection):
                result.dead_letters.append(self._dead_letter(record, outcome))
                continue
            user = next(users).encode()
            try:
                if record.topic == self._settings.privacy_requests_topic:
                    result.audit.append(self._erase(record, outcome, user, states, result))
                else:
                    session = next(sessions)[:16]
                    answer = self._handle(
                        record, outcome, user, session, states, result, pending=pending
                    )
                    if answer is not None:
                        pending.append(answer)
            except Exception as exc:  # a bug on odd input must not stop the worker
                log.exception("failed on %s[%d]@%d", record.topic, record.partition, record.offset)
                reject = Rejection(Reason.PROCESSING_ERROR, f"{type(exc).__name__}: {exc}"[:200])
                result.dead_letters.append(self._dead_letter(record, reject))
        self._recommend(pending, result)
        result.changes = states.changes()
        result.unreadable_states = states.unreadable
        return result

    def _check(self, record: InputRecord) -> dict[str, Any] | Rejection:
        outcome = self._validators[record.topic](record.value)
        if record.topic == self._settings.privacy_requests_topic and isinstance(outcome, dict):
            if not record.key:
                return Rejection(Reason.MISSING_FIELD, "record key (the raw user id) is missing")
            try:
                record.key.decode("utf-8")
            except UnicodeDecodeError:
                return Rejection(Reason.NOT_UTF8, "record key is not UTF-8")
        return outcome

    def _raw_id(self, record: InputRecord, outcome: dict[str, Any] | Rejection) -> str | None:
        if isinstance(outcome, Rejection):
            return None
        if record.topic == self._settings.privacy_requests_topic:
            return (record.key or b"").decode("utf-8")
        return str(outcome["user_id"])

    def _dead_letter(self, record: InputRecord, rejection: Rejection) -> OutputRecord:
        return dead_letter(
            record, rejection, topic=self._settings.dlq_topic, seal=self.seal_dead_letter
        )

    def _erase(
        self,
        record: InputRecord,
        request: dict[str, Any],
        user: bytes,
        states: UserStates,
        result: BatchResult,
    ) -> OutputRecord:
        """Delete the user's state and key; the outcome goes to the audit topic."""
        existed = states.erase(user, record.partition)
        result.erased += 1
        now = self._clock()
        outcome = {
            "request_id": request["request_id"],
            "action": "erase",
            "outcome": "erased" if existed else "no_state",
            "ts": round(now, 6),
            "latency_ms": round(max(0.0, now - record.timestamp) * 1000.0, 3),
        }
        return OutputRecord(
            topic=self._settings.privacy_audit_topic,
            key=str(request["request_id"]).encode(),
            value=orjson.dumps(outcome),
        )

    def _handle(
        self,
        record: InputRecord,
        event: dict[str, Any],
        user: bytes,
        session: str,
        states: UserStates,
        result: BatchResult,
        *,
        pending: list[_Pending],
    ) -> _Pending | None:
        """Apply one event; its pending answer, or None when it was applied (and answered) before.

        The agent sends a batch's recommendations before its changelog records, so
        a state that already holds this event's offset means its recommendation
        reached the broker: answering a redelivered event again would only
        duplicate it (at-least-once in, effectively once out; docs/reliability.md).
        """
        state = states.get(user)
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
            history_len=self._settings.history_len,
        )
        if not fresh:
            result.redelivered += 1
            return None
        kind = event["type"]
        result.events_by_type[kind] = result.events_by_type.get(kind, 0) + 1
        self._evaluate(state, event.get("item_id"), result)
        self._evaluate_intent(state.last_intent, purchased=kind == "purchase")
        self.shared.contribute(
            state,
            item=event.get("item_id"),
            previous_item=previous_item,
            previous_cell=previous_cell,
            current_type=TYPE_INDEX[kind],
            now=float(event["ts"]),
        )
        states.changed(user, record.partition)
        if self.shared.due(float(event["ts"])):
            # The baseline and the purchase rate are about to learn a release: the
            # events before this one are answered by what they would have met.
            self._recommend(pending, result)
            pending.clear()
            self.shared.advance(float(event["ts"]))
        query = event.get("query") if event["type"] == "search" else None
        return _Pending(
            record=record,
            event=event,
            state=state,
            request=RankRequest(history=tuple(state.items), query=query),
            purchase_intent=round(self._predict_intent(state), 6),
        )

    def _predict_intent(self, state: UserFeatures) -> float:
        """P(the next event is a purchase), from the river model once it has shown it is better.

        Both predictions are kept in the state for the next event's log-loss; the
        river model is served only while its prequential log-loss over the last
        1,000 events beats the purchase rate's, after ``INTENT_TRIAL`` scored
        predictions (the rate is the fallback), as judged at the batch's start.
        """
        rate = self.intent.predict_one(state.last_type)
        cell = intent_cell(state.last_type, state.session_events, state.session_carts)
        river = self.cell_intent.predict(cell)
        state.last_intent = [-1.0 if river is None else river, rate]
        return river if river is not None and self._river_serves else rate

    def river_serves(self) -> bool:
        """Whether the river intent model has earned its place over the purchase rate."""
        river, rate = (self.intent_loss[name].snapshot() for name in ("river", "rate"))
        return river.n >= INTENT_TRIAL and river.window_log_loss < rate.window_log_loss

    def _evaluate_intent(self, last_intent: Sequence[float], *, purchased: bool) -> None:
        """Prequential log-loss of the intent last predicted for this user."""
        if not last_intent:
            return
        river, rate = last_intent
        self.intent_loss["rate"].update_one(rate, purchased)
        if river >= 0:
            self.intent_loss["river"].update_one(river, purchased)

    def _evaluate(self, state: UserFeatures, item: str | None, result: BatchResult) -> None:
        """Prequential check: was this item in the user's last list, before anything learns."""
        score = self.prequential.update_one(state.last_emitted or None, item)
        if score is None:
            return
        if self.drift.update(1.0 - score.hit):
            result.drifts += 1
        verdict = self.probation.observe(state.last_version, score.hit)
        if verdict is not None and not verdict.accepted:
            rejected = self.ranker.primary.version
            log.error(
                "model %s failed probation, back to %s: %s",
                rejected,
                self._previous.version,
                verdict.reason,
            )
            self.use_scorer(self._previous)
            if self._on_reject is not None:
                self._on_reject(rejected, verdict.reason)

    def _recommend(self, pending: Sequence[_Pending], result: BatchResult) -> None:
        """Rank the pending events in one call and add their recommendations to ``result``."""
        if not pending:
            return
        started = time.perf_counter()
        ranked = self.ranker.rank_many([p.request for p in pending])
        result.scoring_seconds += time.perf_counter() - started
        now = self._clock()
        out = result.recommendations
        for waiting, answer in zip(pending, ranked, strict=True):
            waiting.state.last_emitted = [item for item, _ in answer.items[:EMITTED_KEPT]]
            waiting.state.last_version = answer.model_version
            latency_s = max(0.0, now - waiting.record.timestamp)
            result.latencies.append(latency_s)
            value = {
                "user_id": waiting.event["user_id"],
                "event_id": waiting.event["event_id"],
                "ts": round(now, 6),
                "context": answer.context,
                "items": [{"item_id": item, "score": score} for item, score in answer.items],
                "purchase_intent": waiting.purchase_intent,
                "model_version": answer.model_version,
                "latency_ms": round(latency_s * 1000.0, 3),
            }
            out.append(
                OutputRecord(
                    topic=self._settings.recommendations_topic,
                    key=waiting.event["user_id"].encode(),
                    value=orjson.dumps(value),
                )
            )
