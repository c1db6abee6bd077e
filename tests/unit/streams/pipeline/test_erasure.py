"""Erasure that cannot be undone and DP bounds that cannot be reset, batch by batch."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from model.serving.ranker import Ranked, RankRequest
from model.threshold import epsilon_units
from streams.errors import StateDecryptionError
from streams.pipeline.crypto import StateCipher, unpack_record
from streams.pipeline.pseudonyms import Pseudonymizer
from streams.pipeline.working_set import USER_SEALED_DEAD_LETTER
from tests.unit.streams.pipeline.test_batch import (
    EXACT,
    KEY,
    MASTER,
    Tables,
    _erase,
    _pipeline,
    _record,
    _run,
    _view,
)


def _items(result: Any) -> list[list[str]]:
    return [
        [item["item_id"] for item in orjson.loads(r.value)["items"]] for r in result.recommendations
    ]


def test_events_stamped_before_an_erasure_are_dropped_whatever_order_they_arrive_in() -> None:
    pipeline, store = _pipeline(), Tables()
    before = [_record(_view("u", item, f"e{n}"), n, timestamp=99.5) for n, item in enumerate("abc")]
    # The request's partition is read first (or the events lag): it arrives before them.
    result = _run(pipeline, [_erase("u", "r1", 0, timestamp=99.6), *before], store)
    assert orjson.loads(result.audit[0].value or b"")["outcome"] == "no_state"
    assert result.recommendations == [] and result.stats.erased_records == 3
    # ... or in a later batch, e.g. redelivered after a crash.
    again = _run(pipeline, before, store)
    assert again.recommendations == [] and again.stats.erased_records == 3
    after = _run(pipeline, [_record(_view("u", "d", "e9"), 9, timestamp=99.7)], store)
    assert _items(after) == [["d"]] and store.plain("u").items == ["d"]


def test_a_redelivered_erase_request_keeps_what_came_after_it() -> None:
    pipeline, store = _pipeline(), Tables()
    _run(pipeline, [_record(_view("u", "a"), 0), _erase("u", "r1", 0)], store)
    _run(pipeline, [_record(_view("u", "b", "e2"), 1, timestamp=99.7)], store)
    again = _run(pipeline, [_erase("u", "r1", 0)], store)  # the same request, redelivered
    assert orjson.loads(again.audit[0].value or b"")["outcome"] == "no_state"
    assert store.plain("u").items == ["b"]


def test_erasing_again_and_again_cannot_reset_the_contribution_bound() -> None:
    pipeline, store = _pipeline(), Tables()
    released: list[dict[str, int]] = []
    learn = pipeline.shared._recommender.learn_counts

    def spy(popularity: dict[str, int], transitions: dict[Any, int]) -> None:
        released.append(popularity)
        learn(popularity, transitions)

    pipeline.shared._recommender.learn_counts = spy  # type: ignore[method-assign]
    records = []
    for n in range(150):  # view, erase, view, erase ... all in one window
        stamp = 1_000.0 + n
        records.append(_record(_view("u", "x", f"e{n}", ts=1.0), 2 * n, timestamp=stamp))
        records.append(_erase("u", f"r{n}", n, timestamp=stamp + 0.5))
    records.append(_record(_view("w", "y", "late", ts=25.0), 999, timestamp=1_200.0))
    _run(pipeline, records, store)
    assert pipeline.shared.released_windows == 1
    assert released[0].get("x", 0) <= 1  # noise 0 at this epsilon: counted once, not 150 times
    assert pipeline.shared.charged_units == 2 * epsilon_units(EXACT.shared_counts_epsilon)


def test_a_state_that_fails_to_open_keeps_its_spend() -> None:
    pipeline, store = _pipeline(), Tables()
    _run(pipeline, [_record(_view("u", "a", "e1", ts=1.0), 0)], store)
    user = Pseudonymizer(KEY).one("u").encode()
    store.states[user] = store.states[user][:-1] + bytes([store.states[user][-1] ^ 1])
    spent = store.ledger("u").spent_units
    result = _run(pipeline, [_record(_view("u", "b", "e2", ts=2.0), 1)], store)
    assert result.stats.unreadable_states == 1
    assert store.plain("u").items == ["b"]
    assert store.plain("u").privacy_budget[1] == spent == store.ledger("u").spent_units
    assert pipeline.shared.charged_units == spent  # not charged again: no second contribution


def test_a_released_window_takes_no_redelivered_contribution_after_a_restart() -> None:
    pipeline, store = _pipeline(), Tables()
    crowd = [_record(_view(f"c{n}", "x", f"e{n}", ts=1.0), n) for n in range(5)]
    closing = _record(_view("z", "y", "close", ts=12.0), 50)
    result = _run(pipeline, [*crowd, closing], store)
    assert result.release_marks == {0: 10.0}
    # A new worker (or the same after a crash) gets the partition with the marks but not the
    # states of the last batch: the events come again and must not feed window 0 twice.
    restarted = _pipeline()
    restarted.shared.note_released(result.release_marks)
    again = _run(restarted, [*crowd, _record(_view("z", "y", "close2", ts=13.0), 51)], Tables())
    assert len(again.recommendations) == 6
    assert restarted.shared.dropped > 0 and restarted.shared.released_windows == 0


def test_a_far_future_timestamp_cannot_close_the_windows() -> None:
    pipeline, store = _pipeline(), Tables()
    future = _record(_view("m", "x", "evil", ts=99.5 + 86_400), 0)
    result = _run(pipeline, [future, _record(_view("u", "a", "e1", ts=1.0), 1)], store)
    assert [dict(d.headers)["reason"] for d in result.dead_letters] == [b"bad_timestamp"]
    assert pipeline.shared.released_windows == 0
    assert pipeline.shared.charged_units > 0  # shared learning goes on for everyone


def test_a_users_dead_letters_are_sealed_under_their_key_and_shredded_by_erasure() -> None:
    pipeline, store = _pipeline(), Tables()
    bad = orjson.dumps({"event_id": "e", "user_id": "u", "ts": 1.0, "type": "view"})
    result = _run(pipeline, [_record(bad, 0)], store)
    [letter] = result.dead_letters
    user = Pseudonymizer(KEY).one("u").encode()
    assert (
        dict(letter.headers)["user"] == user and dict(letter.headers)["reason"] == b"missing_field"
    )
    sealed = letter.value or b""
    assert sealed[0] == USER_SEALED_DEAD_LETTER and bad not in sealed
    wrapped = store.ledger("u").wrapped_key or b""
    opened = StateCipher(MASTER).open(user, wrapped, sealed[1:])
    assert unpack_record(opened) == (b"u", bad)
    _run(pipeline, [_erase("u", "r1", 1)], store)
    assert store.ledger("u").wrapped_key is None  # the only key that opens it is gone
    with pytest.raises(StateDecryptionError):
        StateCipher(MASTER).open(user, StateCipher(MASTER).new_wrapped_key(user), sealed[1:])
    # A bad record of the user stamped before the erasure is dropped, not kept.
    late = _run(pipeline, [_record(bad, 2, timestamp=99.0)], store)
    assert late.dead_letters == [] and late.stats.erased_records == 1


class _BrittleRanker:
    """Breaks on one query, like a scorer meeting input it cannot handle."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def rank_many(self, requests: list[RankRequest], *, depth: int = 0) -> list[Ranked]:
        if any(r.query == "boom" for r in requests):
            raise RuntimeError("cannot rank this")
        return list(self._inner.rank_many(requests, depth=depth))


def test_an_event_that_breaks_the_scorer_costs_only_its_own_answer() -> None:
    pipeline, store = _pipeline(), Tables()
    pipeline.scoring.ranker = _BrittleRanker(pipeline.ranker)  # type: ignore[assignment]
    search = orjson.dumps(
        {"event_id": "q", "user_id": "s", "ts": 2.0, "type": "search", "query": "boom"}
    )
    records = [_record(_view("u", "a", "e1"), 0), _record(search, 1), _record(_view("v", "b"), 2)]
    result = _run(pipeline, records, store)
    assert len(result.recommendations) == 2
    assert [dict(d.headers)["reason"] for d in result.dead_letters] == [b"processing_error"]


def test_a_users_record_on_another_partition_is_refused_and_writes_no_ledger_there() -> None:
    """A producer with another partitioner must not split a user's state and erasure."""
    pipeline, store = _pipeline(), Tables()
    _run(pipeline, [_record(_view("u", "a"), 0, partition=0)], store)
    assert store.ledger("u").partition == 0
    stray = [
        _erase("u", "r1", 0)._replace(partition=1),
        _record(_view("u", "b", "e2"), 1, partition=1),
    ]
    result = pipeline.process(stray, read_state=store.states.get, read_key=store.keys.get)
    assert result.audit == [] and result.recommendations == []
    letters = result.dead_letters
    assert [dict(d.headers)["reason"] for d in letters] == [b"key_mismatch"] * 2
    assert all((d.value or b"")[0] != USER_SEALED_DEAD_LETTER for d in letters)
    assert result.changes.keys == {} and result.changes.states == {}
    assert store.plain("u").items == ["a"]


def test_a_request_that_does_not_parse_is_sealed_under_the_user_its_key_names() -> None:
    pipeline, store = _pipeline(), Tables()
    result = _run(pipeline, [_erase("u", "r1", 0, body=b"{not json")], store)
    [letter] = result.dead_letters
    assert (letter.value or b"")[0] == USER_SEALED_DEAD_LETTER
    assert dict(letter.headers)["user"] == Pseudonymizer(KEY).one("u").encode()
    _run(pipeline, [_erase("u", "r2", 1, timestamp=100.0)], store)
    assert store.ledger("u").wrapped_key is None  # the erasure shreds it
