"""The recommendation as a typed value, decoded from a record of ``shop.recommendations``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, cast

import fastjsonschema
import orjson

from streams.pipeline.validation import load_schema

RECOMMENDATION_SCHEMA = "schemas/recommendation.schema.json"

Context = Literal["browse", "search"]


def _compile_lenient() -> Any:
    # A newer worker may add fields (to the record or to its items); an older client
    # ignores them instead of failing on every record. Everything the schema names is
    # checked as published.
    schema = load_schema(RECOMMENDATION_SCHEMA)
    schema["additionalProperties"] = True
    schema["properties"]["items"]["items"]["additionalProperties"] = True
    return fastjsonschema.compile(schema)


_check = _compile_lenient()


@dataclass(frozen=True, slots=True)
class ScoredItem:
    """One recommended item and its score (comparable only within its list)."""

    item_id: str
    score: float


@dataclass(frozen=True, slots=True)
class Recommendation:
    """One recommendation, as docs/consuming.md describes each field.

    Examples:
        >>> rec = Recommendation.from_json(
        ...     b'{"user_id": "u1", "event_id": "e1", "ts": 1700000000.2, "context": "browse",'
        ...     b' "items": [{"item_id": "i7", "score": 0.31}], "purchase_intent": 0.42,'
        ...     b' "model_version": "baseline-cooc-1", "latency_ms": 4.1}')
        >>> rec.items[0], rec.context
        (ScoredItem(item_id='i7', score=0.31), 'browse')
        >>> rec.item_ids
        ('i7',)
    """

    user_id: str
    event_id: str
    ts: float
    context: Context
    items: tuple[ScoredItem, ...]
    purchase_intent: float
    model_version: str
    latency_ms: float

    @property
    def item_ids(self) -> tuple[str, ...]:
        """The recommended item ids, best first."""
        return tuple(item.item_id for item in self.items)

    @classmethod
    def from_json(cls, value: bytes | str | None) -> Recommendation:
        """Decode and check one record value against the recommendation schema.

        Fields the schema does not name (added by a newer worker) are ignored.

        Raises:
            ValueError: The value is not UTF-8 JSON, or breaks the schema (which field, why).
        """
        if value is None:
            raise ValueError("record has no value")
        try:
            rec = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"not JSON: {exc}") from None
        if not isinstance(rec, dict):
            raise ValueError(f"top level is {type(rec).__name__}, not an object")
        try:
            _check(rec)
        except fastjsonschema.JsonSchemaValueException as exc:
            raise ValueError(exc.message[:200]) from None
        return cls(
            user_id=rec["user_id"],
            event_id=rec["event_id"],
            ts=float(rec["ts"]),
            context=cast(Context, rec["context"]),
            items=tuple(ScoredItem(item["item_id"], float(item["score"])) for item in rec["items"]),
            purchase_intent=float(rec["purchase_intent"]),
            model_version=rec["model_version"],
            latency_ms=float(rec["latency_ms"]),
        )
