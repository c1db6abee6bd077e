"""Random and mutated shop events for fuzzing the worker: valid seeds, then many ways to break them.

Seeded (``random.Random``), so a failure reproduces. Each record carries a
unique event id where it still has one, so its answer can be traced back.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from typing import Any

TYPES = ("view", "click", "search", "add_to_cart", "purchase")
#: Values of every JSON kind, and the awkward ones inside them (all valid JSON).
ODD_VALUES: tuple[Any, ...] = (
    None,
    True,
    0,
    -1,
    1e308,
    -1e-300,
    2**70,
    "",
    " ",
    "\u0000",
    "😀" * 3,
    "x" * 5000,
    [],
    [1, 2],
    {},
    {"nested": {"deeper": [None]}},
    "NaN",
    "1e999",
)
#: What careless producers write that is not JSON at all.
NOT_JSON: tuple[float, ...] = (float("nan"), float("inf"), float("-inf"))


def _dumps(value: Any) -> bytes:
    """JSON as a careless producer might write it (big ints, NaN and Infinity included)."""
    return json.dumps(value, ensure_ascii=False).encode()


def valid_event(n: int, rng: random.Random) -> dict[str, Any]:
    """A valid event with event id ``f"f{n}"``; some optional and unknown fields."""
    kind = rng.choice(TYPES)
    event: dict[str, Any] = {
        "event_id": f"f{n}",
        "user_id": f"user-{rng.randrange(300)}",
        "ts": 1.7e9 + n + rng.random(),
        "type": kind,
    }
    if rng.random() < 0.8:
        event["session_id"] = f"s-{rng.randrange(600)}"
    if kind == "search":
        event["query"] = rng.choice(["red shoes", "zapatos", "手机壳", "a" * 300])
    else:
        event["item_id"] = f"item-{rng.randrange(200)}"
    if rng.random() < 0.3:
        event["price"] = round(rng.uniform(0, 500), 2)
    if rng.random() < 0.1:
        event["unknown_field"] = rng.choice(ODD_VALUES)
    return event


def _drop_field(event: dict[str, Any], rng: random.Random) -> bytes:
    event.pop(rng.choice(sorted(event)), None)
    return _dumps(event)


def _odd_value(event: dict[str, Any], rng: random.Random) -> bytes:
    event[rng.choice([*sorted(event), "item_id", "query", "type"])] = rng.choice(
        ODD_VALUES + NOT_JSON
    )
    return _dumps(event)


def _truncate(event: dict[str, Any], rng: random.Random) -> bytes:
    raw = _dumps(event)
    return raw[: rng.randrange(len(raw))]


def _flip_bytes(event: dict[str, Any], rng: random.Random) -> bytes:
    raw = bytearray(_dumps(event))
    for _ in range(rng.randint(1, 4)):
        raw[rng.randrange(len(raw))] = rng.randrange(256)
    return bytes(raw)


def _random_bytes(event: dict[str, Any], rng: random.Random) -> bytes:
    return rng.randbytes(rng.randrange(0, 200))


def _not_an_object(event: dict[str, Any], rng: random.Random) -> bytes:
    return _dumps(rng.choice([[event], "event", 42, None, [], True]))


def _huge(event: dict[str, Any], rng: random.Random) -> bytes:
    event["padding"] = "p" * rng.randrange(60_000, 200_000)
    return _dumps(event)


def _wrong_type_name(event: dict[str, Any], rng: random.Random) -> bytes:
    event["type"] = rng.choice(["View", "buy", "", "search ", "purchase\u0000"])
    return _dumps(event)


MUTATIONS: tuple[Callable[[dict[str, Any], random.Random], bytes], ...] = (
    _drop_field,
    _odd_value,
    _truncate,
    _flip_bytes,
    _random_bytes,
    _not_an_object,
    _huge,
    _wrong_type_name,
)


def fuzzed_records(
    count: int, *, seed: int, valid_share: float = 0.5
) -> Iterator[tuple[bytes, bytes | None, bool]]:
    """``(key, value, unmutated)``: about ``valid_share`` valid events, the rest mutated or empty.

    Every record is keyed by the user id of the event it was made from, as a
    producer keys it. An unmutated record must be answered; a mutated one may
    still be valid (a dropped optional field, an odd unknown field).
    """
    rng = random.Random(seed)
    for n in range(count):
        event = valid_event(n, rng)
        key = str(event["user_id"]).encode()
        roll = rng.random()
        if roll < valid_share:
            yield key, _dumps(event), True
        elif roll < valid_share + 0.01:
            yield key, None, False  # a record with no value at all
        else:
            yield key, rng.choice(MUTATIONS)(event, rng), False
