"""Per-user feature updates: ordering, history bound, redelivery, round trip."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streams.pipeline.state import EVENT_TYPES, UserState, apply_event


def _event(kind: str = "view", item: str | None = "i1", ts: float = 1.0) -> dict[str, object]:
    event: dict[str, object] = {"event_id": "e", "user_id": "u", "ts": ts, "type": kind}
    if item is not None:
        event["item_id"] = item
    return event


def test_events_update_counts_history_and_session() -> None:
    state = UserState()
    for offset, (kind, item, session) in enumerate(
        [("view", "a", "s1"), ("add_to_cart", "a", "s1"), ("search", None, "s2")]
    ):
        assert apply_event(
            state,
            _event(kind, item, ts=10.0 + offset),
            session=session,
            partition=0,
            offset=offset,
            history_len=10,
        )
    assert state.items == ["a", "a"]
    assert state.type_counts == [1, 0, 1, 1, 0]
    assert (state.session, state.session_events, state.session_carts) == ("s2", 1, 0)
    assert state.last_ts == 12.0
    assert EVENT_TYPES[state.last_type] == "search"


def test_history_keeps_only_the_most_recent_items() -> None:
    state = UserState()
    for offset in range(7):
        apply_event(
            state, _event(item=f"i{offset}"), session="", partition=0, offset=offset, history_len=3
        )
    assert state.items == ["i4", "i5", "i6"]


def test_a_redelivered_record_is_not_applied_twice() -> None:
    state = UserState()
    assert apply_event(state, _event(), session="", partition=3, offset=41, history_len=5)
    assert not apply_event(state, _event(), session="", partition=3, offset=41, history_len=5)
    assert not apply_event(state, _event(), session="", partition=3, offset=40, history_len=5)
    assert apply_event(state, _event(), session="", partition=3, offset=42, history_len=5)
    assert state.type_counts[0] == 2


@given(
    st.lists(
        st.tuples(st.sampled_from(EVENT_TYPES), st.text(min_size=1, max_size=8)),
        max_size=30,
    )
)
def test_state_survives_a_bytes_round_trip(steps: list[tuple[str, str]]) -> None:
    state = UserState()
    for offset, (kind, item) in enumerate(steps):
        apply_event(
            state,
            _event(kind, None if kind == "search" else item),
            session="s",
            partition=1,
            offset=offset,
            history_len=8,
        )
    assert UserState.from_bytes(state.to_bytes()) == state


def test_no_state_means_a_new_user() -> None:
    assert UserState.from_bytes(None) == UserState()
