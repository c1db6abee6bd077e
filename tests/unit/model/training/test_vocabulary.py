"""The DP vocabulary: items many sessions hold are kept, one session's items are not."""

from __future__ import annotations

from model.training.vocabulary import private_vocabulary


def test_popular_items_are_released_and_a_single_sessions_item_is_not() -> None:
    sessions = [["a", "b", f"own-{n}"] for n in range(400)] + [["secret", "a"]]
    vocab, spend = private_vocabulary(sessions, epsilon=1.0, delta=1e-6, max_items=3)
    assert vocab.ids[1:] == ["a", "b"] or vocab.ids[1:] == ["b", "a"]
    assert spend["items"] == 2 and spend["epsilon"] == 1.0 and spend["delta"] == 1e-6


def test_a_session_adds_to_at_most_max_items_of_its_first_distinct_items() -> None:
    # 300 sessions, each repeating "x" and then holding 9 more items: only "x" and the
    # first other item are counted per session, so "late" (its 10th) never gets a count.
    sessions = [["x", "x", "first", *[f"s{n}-{k}" for k in range(7)], "late"] for n in range(300)]
    vocab, _ = private_vocabulary(sessions, epsilon=2.0, delta=1e-6, max_items=2)
    assert set(vocab.ids[1:]) == {"x", "first"}
