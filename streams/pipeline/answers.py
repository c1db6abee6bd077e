"""The output records of a batch: recommendations, erasure audits and dead letters.

Their values are the message contracts of docs/contracts.md (JSON Schemas in
``streams/schemas/``). Raw user ids appear only where the contract allows them: the
recommendation's key and ``user_id``; a dead letter's copy of the input is sealed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from model.serving.ranker import Ranked
from streams.pipeline.records import InputRecord, OutputRecord, Sealer, dead_letter
from streams.pipeline.validation import Rejection

#: A user's pseudonym and a sealer under their own data key, for their dead letters.
UserSeal = tuple[bytes, Sealer]


class Answers:
    """Builds the records a batch produces, on the topics of the settings."""

    def __init__(
        self,
        *,
        recommendations_topic: str,
        audit_topic: str,
        dlq_topic: str,
        seal: Sealer,
        clock: Callable[[], float],
    ) -> None:
        self._recommendations_topic = recommendations_topic
        self._audit_topic = audit_topic
        self._dlq_topic = dlq_topic
        self.seal = seal
        self.clock = clock

    def dead_letter(
        self, record: InputRecord, rejection: Rejection, *, user_seal: UserSeal | None = None
    ) -> OutputRecord:
        """The DLQ copy of a rejected input, with the reason in its headers.

        Sealed under the master-derived DLQ key, or with ``user_seal`` (the user's
        pseudonym and a sealer under their own data key) when it names a user.
        """
        if user_seal is None:
            return dead_letter(record, rejection, topic=self._dlq_topic, seal=self.seal)
        user, seal = user_seal
        return dead_letter(record, rejection, topic=self._dlq_topic, seal=seal, user=user)

    def audit(self, record: InputRecord, request: dict[str, Any], *, existed: bool) -> OutputRecord:
        """The audit record of an applied erasure request."""
        now = self.clock()
        outcome = {
            "request_id": request["request_id"],
            "action": "erase",
            "outcome": "erased" if existed else "no_state",
            "ts": round(now, 6),
            "latency_ms": round(max(0.0, now - record.timestamp) * 1000.0, 3),
        }
        return OutputRecord(
            topic=self._audit_topic,
            key=str(request["request_id"]).encode(),
            value=orjson.dumps(outcome),
        )

    def recommendation(
        self,
        event: dict[str, Any],
        answer: Ranked,
        *,
        purchase_intent: float,
        now: float,
        latency_s: float,
    ) -> OutputRecord:
        """The recommendation answering ``event``, keyed by its raw user id."""
        value = {
            "user_id": event["user_id"],
            "event_id": event["event_id"],
            "ts": round(now, 6),
            "context": answer.context,
            "items": [{"item_id": item, "score": score} for item, score in answer.items],
            "purchase_intent": purchase_intent,
            "model_version": answer.model_version,
            "latency_ms": round(latency_s * 1000.0, 3),
        }
        return OutputRecord(
            topic=self._recommendations_topic,
            key=event["user_id"].encode(),
            value=orjson.dumps(value),
        )
