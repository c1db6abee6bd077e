"""tail's compact format (the consumer loop is covered by tests/integration/test_replay.py)."""

from __future__ import annotations

from typing import Any

import pytest

from streams.ops.tail import format_recommendation


@pytest.mark.parametrize(
    ("rec", "line"),
    [
        (
            {"user_id": "u1", "context": "search", "purchase_intent": 0.5,
             "items": [{"item_id": f"i{n}", "score": 1 / (n + 1)} for n in range(8)],
             "model_version": "seq-7", "latency_ms": 12.345, "event_id": "e"},
            "u1 search [i0 1.000, i1 0.500, i2 0.333, i3 0.250, i4 0.200] intent=0.500"
            " model=seq-7 latency=12.3ms",
        ),
        ({"user_id": "u2", "items": ["x", {"score": "high"}], "latency_ms": True},
         "u2 ? [?, ? ?] intent=? model=? latency=?ms"),
    ],
)  # fmt: skip
def test_tail_formats_one_compact_line(rec: dict[str, Any], line: str) -> None:
    assert format_recommendation(rec) == line
