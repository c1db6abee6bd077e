"""The latest lists: bounded, erased at once, given away with their partitions."""

from __future__ import annotations

from streams.http.latest import LatestLists


def test_the_least_recently_answered_users_go_first() -> None:
    lists = LatestLists(capacity=2)
    lists.update({b"a": (0, b"1"), b"b": (0, b"2")})
    lists.update({b"a": (0, b"3")})  # a answered again: b is now the oldest
    lists.update({b"c": (1, b"4")})
    assert (lists.get(b"a"), lists.get(b"b"), lists.get(b"c")) == (b"3", None, b"4")
    assert len(lists) == 2


def test_an_erasure_removes_the_list_and_a_later_answer_brings_one_back() -> None:
    lists = LatestLists(capacity=10)
    lists.update({b"a": (0, b"1")})
    lists.update({b"a": (0, None)})
    assert lists.get(b"a") is None
    lists.update({b"a": (0, b"2")})
    assert lists.get(b"a") == b"2"


def test_given_away_partitions_and_expired_users_take_their_lists() -> None:
    lists = LatestLists(capacity=10)
    lists.update({b"a": (0, b"1"), b"b": (1, b"2"), b"c": (2, b"3")})
    lists.drop_partitions({1, 2})
    assert [lists.get(u) for u in (b"a", b"b", b"c")] == [b"1", None, None]
    lists.discard([b"a"])
    assert len(lists) == 0
