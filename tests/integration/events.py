"""Events over the items of a tiny checkpoint (the ``tiny_checkpoint`` fixture), for the
tests that serve or learn a model on Kafka."""

from __future__ import annotations

import orjson

#: The items the tiny checkpoints know (``tiny_checkpoint(run, items=ITEMS)``).
ITEMS = ("a", "b", "c", "d", "e")


def item_views(start: int, count: int) -> list[tuple[bytes, bytes]]:
    """View events ``e<start> ..``, keyed by user, of 7 users cycling through ``ITEMS``."""
    out = []
    for n in range(start, start + count):
        user = f"u{n % 7}"
        event = {
            "event_id": f"e{n}",
            "user_id": user,
            "ts": 1.7e9 + n,
            "type": "view",
            "item_id": ITEMS[n % len(ITEMS)],
        }
        out.append((user.encode(), orjson.dumps(event)))
    return out
