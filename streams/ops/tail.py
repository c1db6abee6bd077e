"""Print the recommendations topic, one line per recommendation.

Used by ``intentstream tail`` to watch what the workers publish, either as a
compact summary per line or as the raw JSON values. It reads with
:class:`streams.client.RecommendationConsumer`.
"""

from __future__ import annotations

import itertools
import logging
import sys
from typing import Any, TextIO, Unpack

import orjson

from streams.client import RecommendationConsumer
from streams.client.consumer import Reading
from streams.settings import Settings

log = logging.getLogger(__name__)

#: Items shown per recommendation in the compact format.
TOP_ITEMS = 5


def format_recommendation(rec: dict[str, Any], *, top: int = TOP_ITEMS) -> str:
    """One compact line: user, context, top items with scores, intent, model, latency.

    Missing or mistyped fields print as ``?``: the tail shows what was
    published, it doesn't validate it.

    Examples:
        >>> format_recommendation({"user_id": "u1", "context": "browse",
        ...     "items": [{"item_id": "i7", "score": 0.31}, {"item_id": "i9", "score": 0.2}],
        ...     "purchase_intent": 0.42, "model_version": "seq-1", "latency_ms": 4.13})
        'u1 browse [i7 0.310, i9 0.200] intent=0.420 model=seq-1 latency=4.1ms'
        >>> format_recommendation({"user_id": "u2"})
        'u2 ? [] intent=? model=? latency=?ms'
    """
    items = rec.get("items")
    shown = items[:top] if isinstance(items, list) else []
    ranked = ", ".join(
        f"{item.get('item_id', '?')} {_number(item.get('score'), '.3f')}"
        if isinstance(item, dict)
        else "?"
        for item in shown
    )
    return (
        f"{rec.get('user_id', '?')} {rec.get('context', '?')} [{ranked}]"
        f" intent={_number(rec.get('purchase_intent'), '.3f')}"
        f" model={rec.get('model_version', '?')}"
        f" latency={_number(rec.get('latency_ms'), '.1f')}ms"
    )


def _number(value: object, spec: str) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return format(value, spec)
    return "?"


def _line(value: bytes | None, *, raw: bool) -> str:
    text = (value or b"").decode("utf-8", errors="replace")
    if raw:
        return text
    try:
        rec = orjson.loads(text)
    except orjson.JSONDecodeError:
        return f"<not JSON: {text[:80]!r}>"
    return (
        format_recommendation(rec) if isinstance(rec, dict) else f"<not an object: {text[:80]!r}>"
    )


def tail(
    settings: Settings,
    *,
    limit: int | None = None,
    out: TextIO | None = None,
    raw: bool = False,
    **reading: Unpack[Reading],
) -> int:
    """Print recommendations from ``settings.recommendations_topic`` as they arrive.

    Ctrl-C ends the tail cleanly and still returns the count, so the CLI can
    report it.

    Args:
        settings: Broker address and topic names.
        limit: Stop after this many records (``None`` = no limit).
        out: Where lines go (``None`` = ``sys.stdout`` at call time).
        raw: Print each value as published instead of the compact summary (for a
            ``topic`` that does not hold recommendations).
        **reading: What to read and when to stop, as :class:`RecommendationConsumer`
            takes it: ``topic``, ``group`` (offsets committed; none without one),
            ``user`` (their partition only), ``from_beginning``, ``stop_at_end``,
            ``idle_timeout``.

    Returns:
        How many records were printed.

    Raises:
        ValueError: ``limit`` is negative.
        BrokerError: The broker could not be reached or refused the login.
        ClientError: The topic does not exist.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    stream = sys.stdout if out is None else out
    printed = 0
    with RecommendationConsumer(settings, **reading) as consumer:
        try:
            for record in itertools.islice(consumer.records(), limit):
                stream.write(f"{_line(record.value, raw=raw)}\n")
                stream.flush()
                printed += 1
        except KeyboardInterrupt:
            log.info("tail of %s interrupted after %d records", consumer.topic, printed)
    return printed
