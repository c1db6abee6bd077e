"""The per-batch work of the scoring agent, free of Faust so it can be tested alone.

:meth:`EventPipeline.process` turns a batch of raw ``shop.events`` records into
the records to produce (recommendations, dead letters, changelog updates). The
agent only decodes, calls it, and sends.
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
from streams.features import EVENT_TYPES, TYPE_INDEX, UserFeatures, apply_event
from streams.pseudonym import Pseudonymizer
from streams.records import InputRecord, OutputRecord, dead_letter
from streams.settings import Settings
from streams.validation import Reason, RecordValidator, Rejection

log = logging.getLogger(__name__)

StateReader = Callable[[bytes], bytes | None]


@dataclass(slots=True)
class BatchResult:
    """Everything one batch produces; ``states`` maps pseudonym -> (partition, state)."""

    recommendations: list[OutputRecord] = field(default_factory=list)
    dead_letters: list[OutputRecord] = field(default_factory=list)
    states: dict[bytes, tuple[int, bytes]] = field(default_factory=dict)
    redelivered: int = 0


@dataclass(frozen=True, slots=True)
class _Pending:
    """An accepted event waiting for its recommendation."""

    record: InputRecord
    event: dict[str, Any]
    request: RankRequest
    purchase_intent: float


class EventPipeline:
    """Validates, pseudonymises, updates features and scores a batch of events.

    With a trained ``scorer`` every accepted event of a batch is ranked in one
    call at the end of the batch. Without one, the stream-learned baseline ranks
    each event before the next event teaches it, so a batch gives exactly what
    the same events would give one by one. The baseline keeps learning either
    way: it answers for users whose items the scorer does not know.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        pseudonymizer: Pseudonymizer,
        clock: Callable[[], float] = time.time,
        scorer: ItemScorer | None = None,
        catalogue: TextCatalogue | None = None,
        encode_queries: QueryEncoder | None = None,
    ) -> None:
        self._settings = settings
        self._validate = RecordValidator(max_bytes=settings.max_event_bytes)
        self._pseudonyms = pseudonymizer
        self._clock = clock
        self.recommender = CooccurrenceRecommender()
        self.intent = NextPurchaseRate(n_types=len(EVENT_TYPES))
        self.ranker = ContextRanker(
            scorer or self.recommender,
            fallback=self.recommender,
            catalogue=catalogue,
            encode_queries=encode_queries,
            config=RankerConfig(top_k=settings.top_k),
        )
        self._rank_each_event = scorer is None

    def process(self, records: Sequence[InputRecord], read_state: StateReader) -> BatchResult:
        """Handle one batch in record order.

        Args:
            records: consumed records, in offset order per partition.
            read_state: the user table lookup (pseudonym bytes -> state bytes or None).

        Returns:
            The outputs of the batch; each user's state appears once, as of its last event.
        """
        result = BatchResult()
        checked = [self._validate(record.value) for record in records]
        accepted = [event for event in checked if isinstance(event, dict)]
        users = iter(self._pseudonyms.many(event["user_id"] for event in accepted))
        sessions = iter(self._pseudonyms.many(event.get("session_id", "") for event in accepted))
        states: dict[bytes, UserFeatures] = {}
        pending: list[_Pending] = []
        for record, outcome in zip(records, checked, strict=True):
            if isinstance(outcome, Rejection):
                result.dead_letters.append(
                    dead_letter(record, outcome, topic=self._settings.dlq_topic)
                )
                continue
            user, session = next(users).encode(), next(sessions)[:16]
            try:
                pending.append(
                    self._handle(record, outcome, user, session, states, read_state, result)
                )
            except Exception as exc:  # a bug on odd input must not stop the worker
                log.exception("failed on %s[%d]@%d", record.topic, record.partition, record.offset)
                reject = Rejection(Reason.PROCESSING_ERROR, f"{type(exc).__name__}: {exc}"[:200])
                result.dead_letters.append(
                    dead_letter(record, reject, topic=self._settings.dlq_topic)
                )
            if self._rank_each_event:
                result.recommendations += self._recommendations(pending)
                pending.clear()
        result.recommendations += self._recommendations(pending)
        return result

    def _handle(
        self,
        record: InputRecord,
        event: dict[str, Any],
        user: bytes,
        session: str,
        states: dict[bytes, UserFeatures],
        read_state: StateReader,
        result: BatchResult,
    ) -> _Pending:
        state = states.get(user)
        if state is None:
            state = states[user] = UserFeatures.from_bytes(read_state(user))
        previous_items, previous_type = list(state.items[-1:]), state.last_type
        fresh = apply_event(
            state,
            event,
            session=session,
            partition=record.partition,
            offset=record.offset,
            history_len=self._settings.history_len,
        )
        if fresh:
            if "item_id" in event:
                self.recommender.learn_one(previous_items, event["item_id"])
            if previous_type >= 0:
                self.intent.learn_one(previous_type, TYPE_INDEX[event["type"]])
            result.states[user] = (record.partition, state.to_bytes())
        else:
            result.redelivered += 1
        query = event.get("query") if event["type"] == "search" else None
        return _Pending(
            record=record,
            event=event,
            request=RankRequest(history=tuple(state.items), query=query),
            purchase_intent=round(self.intent.predict_one(state.last_type), 6),
        )

    def _recommendations(self, pending: Sequence[_Pending]) -> list[OutputRecord]:
        """Rank the pending events in one call and format their recommendations."""
        ranked = self.ranker.rank_many([p.request for p in pending])
        now = self._clock()
        out = []
        for waiting, answer in zip(pending, ranked, strict=True):
            latency_s = max(0.0, now - waiting.record.timestamp)
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
        return out
