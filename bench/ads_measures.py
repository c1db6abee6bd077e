"""What the sponsored-items replay (``ads_replay.py``) reads off the lists it served.

Click-through of sponsored and organic slots, where sponsored items came from in
the list the shopper would have had without them, and HR@10 / NDCG@10 of the
lists as shown. A slot is *clicked* when the shopper's next view or click in the
session is its item (the worker charges any view or click of a sponsored item
within the attribution window: a little more).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

K = 10
#: Places in the list an event gets without sponsored items (0-based upper bounds).
PLACES = (("1st-2nd", 2), ("3rd-10th", 10), ("11th-20th", 20), ("below the 20th", 10**9))

Event = dict[str, Any]
#: Per answered event id: its list as served, each item with whether it was sponsored.
Served = dict[str, list[tuple[str, bool]]]


@dataclass(frozen=True)
class Followers:
    """Per event id: the item of the shopper's next event (``item``, what the monitor
    checks HR@10 on), of the next view or click in the session (``view``, None when
    none came: what makes a slot clicked), and the event's own item (``viewed``).

    The replay's live batches answer every event before the shopper's next one.
    """

    item: dict[str, str]
    view: dict[str, str | None]
    viewed: dict[str, str | None]


def followers(events: Sequence[Event]) -> Followers:
    """The :class:`Followers` of the replayed events."""
    item_after: dict[str, str] = {}
    view_after: dict[str, str | None] = {}
    last: dict[str, str] = {}
    waiting: dict[tuple[str, str], list[str]] = {}
    for event in events:
        item, user, event_id = event.get("item_id"), event["user_id"], event["event_id"]
        if item is not None and user in last:
            item_after[last[user]] = item
        session = (user, event["session_id"])
        if item is not None and event["type"] in ("view", "click"):
            view_after.update((answered, item) for answered in waiting.pop(session, []))
        last[user] = event_id
        waiting.setdefault(session, []).append(event_id)
    for ended in waiting.values():
        view_after.update((event_id, None) for event_id in ended)
    return Followers(item_after, view_after, {e["event_id"]: e.get("item_id") for e in events})


def click_through(
    served: Served, after: Followers, *, sponsored: bool, places: range, new_only: bool
) -> tuple[int, int]:
    """(slots, clicked slots) of sponsored or organic items at 0-based ``places``.

    ``new_only``: leave out the item the shopper was looking at (never sponsored
    to them), whose next view is often a reload.
    """
    slots = clicked = 0
    for event_id, items in served.items():
        target, viewed = after.view[event_id], after.viewed[event_id]
        for place, (item, is_sponsored) in enumerate(items):
            if is_sponsored == sponsored and place in places and not (new_only and item == viewed):
                slots += 1
                clicked += item == target
    return slots, clicked


def origins(on: Served, off: Served) -> Counter[str]:
    """Where each sponsored item stood in the list the same event got without sponsored items."""
    out: Counter[str] = Counter()
    for event_id, items in on.items():
        organic = [item for item, _ in off[event_id]]
        for item, sponsored in items:
            if sponsored:
                place = organic.index(item) if item in organic else len(organic)
                out[next(name for name, bound in PLACES if place < bound)] += 1
    return out


def hit_rates(served: Served, after: Followers) -> tuple[float, float, float, int]:
    """HR@10 and NDCG@10 of the lists as shown, HR@10 of their organic entries; cases.

    NDCG sees what HR cannot: an item moved down the list to make room.
    """
    hits = organic = ndcg = 0.0
    cases = 0
    for event_id, items in served.items():
        target = after.item.get(event_id)
        if target is None:
            continue
        cases += 1
        for place, (item, sponsored) in enumerate(items[:K]):
            if item == target:
                hits += 1
                ndcg += 1 / math.log2(place + 2)
                organic += not sponsored
                break
    n = max(cases, 1)
    return hits / n, ndcg / n, organic / n, cases
