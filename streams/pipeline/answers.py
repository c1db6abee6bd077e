"""The output records of a batch: recommendations, erasure audits and dead letters.

Their values are the message contracts of docs/contracts.md (JSON Schemas in
``streams/schemas/``). Raw user ids appear only where the contract allows them: the
recommendation's key and ``user_id``; a dead letter's copy of the input is sealed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
        sponsored: Mapping[str, str] | None = None,
    ) -> tuple[OutputRecord, bytes]:
        """The recommendation answering ``event``, keyed by its raw user id, and its body.

        The body is the value without ``user_id`` (:func:`recommendation_body`): what
        the worker keeps as the user's latest list, under their pseudonym only.
        """
        user_id = event["user_id"]
        body = recommendation_body(
            event["event_id"],
            answer,
            purchase_intent=purchase_intent,
            now=now,
            latency_s=latency_s,
            sponsored=sponsored,
        )
        record = OutputRecord(
            topic=self._recommendations_topic,
            key=user_id.encode(),
            value=with_user_id(user_id, body),
        )
        return record, body


def recommendation_body(
    event_id: str,
    answer: Ranked,
    *,
    purchase_intent: float,
    now: float,
    latency_s: float,
    sponsored: Mapping[str, str] | None = None,
) -> bytes:
    """A recommendation's JSON without its ``user_id``: every other field, in contract order.

    ``sponsored`` maps the answer's sponsored items to their campaign ids; their
    entries say so (``"sponsored": true, "campaign_id"``).

    Examples:
        >>> answer = Ranked([("i1", 0.5), ("i2", 0.25)], "browse", "v1")
        >>> body = recommendation_body(
        ...     "e1", answer, purchase_intent=0.1, now=1.0, latency_s=0.0, sponsored={"i2": "c1"}
        ... )
        >>> orjson.loads(body)["items"][1]
        {'item_id': 'i2', 'score': 0.25, 'sponsored': True, 'campaign_id': 'c1'}
    """
    items: list[dict[str, Any]] = [
        {"item_id": item, "score": score} for item, score in answer.items
    ]
    if sponsored:
        for entry in items:
            campaign_id = sponsored.get(entry["item_id"])
            if campaign_id is not None:
                entry.update(sponsored=True, campaign_id=campaign_id)
    return orjson.dumps(
        {
            "event_id": event_id,
            "ts": round(now, 6),
            "context": answer.context,
            "items": items,
            "purchase_intent": purchase_intent,
            "model_version": answer.model_version,
            "latency_ms": round(latency_s * 1000.0, 3),
        }
    )


def with_user_id(user_id: str, body: bytes) -> bytes:
    """The recommendation ``body`` with ``user_id`` as its first field: the contract's value.

    Byte for byte what ``orjson.dumps`` gives the whole object, without encoding the
    body twice.

    Examples:
        >>> with_user_id("u1", b'{"event_id":"e1"}')
        b'{"user_id":"u1","event_id":"e1"}'
    """
    return b'{"user_id":' + orjson.dumps(user_id) + b"," + body[1:]
