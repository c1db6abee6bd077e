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
from streams.features import EVENT_TYPES, TYPE_INDEX, UserFeatures, apply_event
from streams.pseudonym import Pseudonymizer
from streams.records import InputRecord, OutputRecord
from streams.settings import Settings
from streams.validation import EventValidator, Reason, Rejection

log = logging.getLogger(__name__)

BASELINE_VERSION = "baseline-cooc-1"

StateReader = Callable[[bytes], bytes | None]


@dataclass(slots=True)
class BatchResult:
    """Everything one batch produces; ``states`` maps pseudonym -> (partition, state)."""

    recommendations: list[OutputRecord] = field(default_factory=list)
    dead_letters: list[OutputRecord] = field(default_factory=list)
    states: dict[bytes, tuple[int, bytes]] = field(default_factory=dict)
    latencies_s: list[float] = field(default_factory=list)
    redelivered: int = 0


class EventPipeline:
    """Validates, pseudonymises, updates features and scores a batch of events."""

    def __init__(
        self,
        settings: Settings,
        *,
        pseudonymizer: Pseudonymizer,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._validate = EventValidator(max_bytes=settings.max_event_bytes)
        self._pseudonyms = pseudonymizer
        self._clock = clock
        self.recommender = CooccurrenceRecommender()
        self.intent = NextPurchaseRate(n_types=len(EVENT_TYPES))

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
        for record, outcome in zip(records, checked, strict=True):
            if isinstance(outcome, Rejection):
                result.dead_letters.append(self._dead_letter(record, outcome))
                continue
            user, session = next(users).encode(), next(sessions)[:16]
            try:
                self._handle(record, outcome, user, session, states, read_state, result)
            except Exception as exc:  # a bug on odd input must not stop the worker
                log.exception("failed on %s[%d]@%d", record.topic, record.partition, record.offset)
                reject = Rejection(Reason.PROCESSING_ERROR, f"{type(exc).__name__}: {exc}"[:200])
                result.dead_letters.append(self._dead_letter(record, reject))
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
    ) -> None:
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
        result.recommendations.append(self._recommendation(record, event, state))

    def _recommendation(
        self, record: InputRecord, event: dict[str, Any], state: UserFeatures
    ) -> OutputRecord:
        items = self.recommender.recommend(state.items, k=self._settings.top_k)
        now = self._clock()
        latency_s = max(0.0, now - record.timestamp)
        value = {
            "user_id": event["user_id"],
            "event_id": event["event_id"],
            "ts": round(now, 6),
            "context": "search" if event["type"] == "search" else "browse",
            "items": [{"item_id": item, "score": score} for item, score in items],
            "purchase_intent": round(self.intent.predict_one(state.last_type), 6),
            "model_version": BASELINE_VERSION,
            "latency_ms": round(latency_s * 1000.0, 3),
        }
        return OutputRecord(
            topic=self._settings.recommendations_topic,
            key=event["user_id"].encode(),
            value=orjson.dumps(value),
        )

    def _dead_letter(self, record: InputRecord, rejection: Rejection) -> OutputRecord:
        headers = [
            ("reason", rejection.reason.value.encode()),
            ("detail", rejection.detail.encode("utf-8", "replace")),
            ("source_topic", record.topic.encode()),
            ("source_partition", str(record.partition).encode()),
            ("source_offset", str(record.offset).encode()),
        ]
        return OutputRecord(
            topic=self._settings.dlq_topic, key=record.key, value=record.value, headers=headers
        )
