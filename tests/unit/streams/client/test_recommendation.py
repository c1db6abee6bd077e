"""Recommendation.from_json: the published schema, typed; a bad record says what is wrong."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from streams.client import Recommendation, ScoredItem

REC = {
    "user_id": "u123",
    "event_id": "e1",
    "ts": 1700000000,
    "context": "search",
    "items": [{"item_id": "i7", "score": 1}, {"item_id": "i19", "score": 0.22}],
    "purchase_intent": 0.42,
    "model_version": "seq-2026-11-28T030000Z-ab12cd34",
    "latency_ms": 4.1,
}


def test_a_recommendation_decodes_to_typed_fields() -> None:
    rec = Recommendation.from_json(orjson.dumps(REC))
    assert rec == Recommendation(
        user_id="u123",
        event_id="e1",
        ts=1700000000.0,
        context="search",
        items=(ScoredItem("i7", 1.0), ScoredItem("i19", 0.22)),
        purchase_intent=0.42,
        model_version="seq-2026-11-28T030000Z-ab12cd34",
        latency_ms=4.1,
    )
    assert isinstance(rec.ts, float) and isinstance(rec.items[0].score, float)
    assert rec.item_ids == ("i7", "i19")
    with pytest.raises(AttributeError):
        rec.user_id = "u2"  # type: ignore[misc]


def test_fields_a_newer_worker_adds_are_ignored() -> None:
    newer = REC | {"explanation": "x"} | {"items": [{"item_id": "i7", "score": 1.0, "ad": True}]}
    assert Recommendation.from_json(orjson.dumps(newer)).items == (ScoredItem("i7", 1.0),)


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        (None, "no value"),
        (b'{"user_id": "u1"', "not JSON"),
        (b"[1, 2]", "top level is list"),
        (orjson.dumps({k: v for k, v in REC.items() if k != "model_version"}), "model_version"),
        (orjson.dumps(REC | {"context": "push"}), "context"),
        (orjson.dumps(REC | {"purchase_intent": 1.5}), "purchase_intent"),
        (orjson.dumps(REC | {"items": [{"item_id": "i7"}]}), "score"),
        (orjson.dumps(REC | {"items": [{"item_id": "i7", "score": "high"}]}), "score"),
        (orjson.dumps(REC | {"ts": "now"}), "ts"),
    ],
)
def test_a_record_that_is_not_a_recommendation_says_why(value: Any, detail: str) -> None:
    with pytest.raises(ValueError, match=detail):
        Recommendation.from_json(value)
