"""Per-user behaviour features, kept in the ``user_state`` table.

Plain module (no Faust): the worker reads a user's state once per batch, applies
that user's events in order with :func:`apply_event`, and writes it back once.
State is stored as compact bytes (an orjson array), keyed by pseudonym, and
holds no raw ids: the session id is stored as its keyed pseudonym too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from streams.pipeline.ads.memory import AdsMemory

EVENT_TYPES: tuple[str, ...] = ("view", "click", "search", "add_to_cart", "purchase")
TYPE_INDEX: dict[str, int] = {name: i for i, name in enumerate(EVENT_TYPES)}
STATE_VERSION = 6
#: Items of the last recommendation kept per user, for the prequential check.
EMITTED_KEPT = 10


@dataclass(slots=True)
class UserState:
    """What the stream keeps about one (pseudonymous) user.

    Attributes:
        items: recent item ids, oldest first, at most ``history_len``.
        type_counts: events seen per type, indexed like :data:`EVENT_TYPES`.
        session: pseudonym of the current session id ("" before the first event).
        session_events: events in the current session.
        session_carts: add-to-carts in the current session.
        last_ts: event time of the last applied event.
        last_type: index of the last event type, -1 before the first event.
        offsets: source ``partition -> offset`` of the last applied event, so a
            batch re-delivered after a crash is not applied twice.
        privacy_budget: the user's DP budget, ``[window_start, micro-epsilons spent]``
            (``streams.pipeline.dp.PrivacyBudget``).
        contributions: what the user added to the shared counts this window,
            ``[window_start, items]`` (``streams.pipeline.dp.ContributionBound``).
        last_emitted: the top items of the last recommendation sent to the user,
            so the next event can be scored against it before anything learns
            from it (prequential evaluation); empty while the user's latest event
            waits for its answer.
        last_version: the model version that produced ``last_emitted``.
        last_intent: the purchase probabilities last predicted for the user,
            ``[river model or -1 when it had none, purchase rate]``, scored
            against their next event (prequential log-loss).
        ads: the user's sponsored items today (frequency caps, impressions awaiting a
            click or purchase, bounded report contributions); None before the first.
    """

    items: list[str] = field(default_factory=list)
    type_counts: list[int] = field(default_factory=lambda: [0] * len(EVENT_TYPES))
    session: str = ""
    session_events: int = 0
    session_carts: int = 0
    last_ts: float = 0.0
    last_type: int = -1
    offsets: dict[str, int] = field(default_factory=dict)
    privacy_budget: list[float | int] = field(default_factory=lambda: [0.0, 0])
    contributions: list[Any] = field(default_factory=lambda: [0.0, []])
    last_emitted: list[str] = field(default_factory=list)
    last_version: str = ""
    last_intent: list[float] = field(default_factory=list)
    ads: AdsMemory | None = None

    def to_bytes(self) -> bytes:
        """Compact serialised form for the table and its changelog."""
        return orjson.dumps(
            [
                STATE_VERSION,
                self.items,
                self.type_counts,
                self.session,
                self.session_events,
                self.session_carts,
                self.last_ts,
                self.last_type,
                self.offsets,
                self.privacy_budget,
                self.contributions,
                self.last_emitted,
                self.last_version,
                self.last_intent,
                None if self.ads is None else self.ads.to_list(),
            ]
        )

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> UserState:
        """Inverse of :meth:`to_bytes`; ``None`` (no state yet) gives a new user."""
        if raw is None:
            return cls()
        version, *fields = orjson.loads(raw)
        if not 1 <= version <= STATE_VERSION:
            raise ValueError(f"unknown user state version {version}")
        ads = fields.pop() if version >= 6 else None
        state = cls(*fields)  # older versions lack trailing fields: their defaults apply
        if ads is not None:
            state.ads = AdsMemory.from_list(ads)
        return state


def apply_event(
    state: UserState,
    event: dict[str, Any],
    *,
    session: str,
    partition: int,
    offset: int,
    history_len: int,
) -> bool:
    """Fold one validated event into ``state``.

    Args:
        state: the user's features, updated in place.
        event: a validated event (see ``streams/schemas/event.schema.json``).
        session: the pseudonym of the event's session id ("" when absent).
        partition: source partition of the record.
        offset: source offset of the record.
        history_len: most recent items kept.

    Returns:
        False when this record was applied before (a redelivery), else True.
    """
    key = str(partition)
    if state.offsets.get(key, -1) >= offset:
        return False
    state.offsets[key] = offset
    type_index = TYPE_INDEX[event["type"]]
    if session != state.session:
        state.session = session
        state.session_events = 0
        state.session_carts = 0
    state.session_events += 1
    state.session_carts += event["type"] == "add_to_cart"
    state.type_counts[type_index] += 1
    state.last_ts = float(event["ts"])
    state.last_type = type_index
    item = event.get("item_id")
    if item is not None:
        state.items.append(item)
        del state.items[:-history_len]
    return True
