"""Prequential HR@K / NDCG@K and intent log-loss, checked against hand computations."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from online_learning.prequential import (
    LogLossSnapshot,
    PrequentialLogLoss,
    PrequentialRanking,
    RankingSnapshot,
    Score,
)


@pytest.mark.parametrize(
    ("emitted", "item", "expected"),
    [
        (["a", "b", "c"], "a", Score(1.0, 1.0)),
        (["a", "b", "c"], "b", Score(1.0, 1 / math.log2(3))),
        (["a", "b", "c"], "c", Score(1.0, 0.5)),  # 1 / log2(4)
        (["a", "b", "c"], "z", Score(0.0, 0.0)),
        (["a", "b", "c", "d"], "d", Score(0.0, 0.0)),  # rank 4 is beyond k = 3
        (["a", "b", "b"], "b", Score(1.0, 1 / math.log2(3))),  # first occurrence counts
        ([], "a", Score(0.0, 0.0)),  # an emitted empty list is a miss
        ((1, 2, 3), 3, Score(1.0, 0.5)),  # any hashable ids
    ],
)
def test_one_event_scores_by_hand(emitted: list[str], item: str, expected: Score) -> None:
    assert PrequentialRanking(k=3).update_one(emitted, item) == expected


def test_events_without_a_list_or_an_item_are_skipped() -> None:
    ranking = PrequentialRanking(k=10)
    assert ranking.update_many([None, ["a"]], ["a", None]) == [None, None]
    assert ranking.snapshot() == RankingSnapshot(
        n=0, n_skipped=2, hr=0.0, ndcg=0.0, window_hr=0.0, window_ndcg=0.0
    )


def test_overall_and_window_means_by_hand() -> None:
    ranking = PrequentialRanking(k=10, window=2)
    ranking.update_many([["a", "b"], ["a", "b"], ["a", "b"], ["x"]], ["a", "b", "z", None])
    # Scores: (1, 1), (1, 1/log2 3), (0, 0); the 4th is skipped. Window = last two.
    ndcg = 1 / math.log2(3)
    assert ranking.get() == pytest.approx(
        {
            "HR@10": 2 / 3,
            "NDCG@10": (1 + ndcg) / 3,
            "HR@10_window": 1 / 2,
            "NDCG@10_window": ndcg / 2,
        }
    )
    snapshot = ranking.snapshot()
    assert (snapshot.n, snapshot.n_skipped) == (3, 1)
    assert snapshot.window_hr == 0.5


def test_k_and_window_are_validated() -> None:
    with pytest.raises(ValueError):
        PrequentialRanking(k=0)
    with pytest.raises(ValueError):
        PrequentialRanking(window=0)
    with pytest.raises(ValueError):
        PrequentialRanking().update_many([["a"]], [])


_pair = st.tuples(
    st.one_of(st.none(), st.lists(st.integers(0, 15), max_size=12)),
    st.one_of(st.none(), st.integers(0, 15)),
)


@settings(max_examples=50, deadline=None)
@given(pairs=st.lists(_pair, max_size=40))
def test_ranking_batched_equals_one_by_one(
    pairs: list[tuple[list[int] | None, int | None]],
) -> None:
    one, many = PrequentialRanking(k=5, window=7), PrequentialRanking(k=5, window=7)
    singles = [one.update_one(top, item) for top, item in pairs]
    assert many.update_many([top for top, _ in pairs], [item for _, item in pairs]) == singles
    assert many.snapshot() == one.snapshot()


def test_log_loss_by_hand() -> None:
    loss = PrequentialLogLoss(window=2)
    assert loss.update_many([0.8, 0.25, 0.5], [True, False, True]) == pytest.approx(
        [-math.log(0.8), -math.log(0.75), math.log(2)]
    )
    expected = (-math.log(0.8) - math.log(0.75) + math.log(2)) / 3
    assert loss.get() == pytest.approx(
        {"log_loss": expected, "log_loss_window": (-math.log(0.75) + math.log(2)) / 2}
    )
    assert loss.snapshot().n == 3


@pytest.mark.parametrize(("p", "label"), [(0.0, True), (1.0, False)])
def test_log_loss_clips_certain_mistakes(p: float, label: bool) -> None:
    loss = PrequentialLogLoss(eps=1e-6)
    assert loss.update_one(p, label) == pytest.approx(-math.log(1e-6))


@pytest.mark.parametrize(("p", "label"), [(1.0, True), (0.0, False)])
def test_log_loss_of_certain_hits_is_tiny(p: float, label: bool) -> None:
    assert PrequentialLogLoss(eps=1e-6).update_one(p, label) == pytest.approx(1e-6, rel=1e-3)


@pytest.mark.parametrize("p", [-0.1, 1.1, math.nan])
def test_log_loss_rejects_non_probabilities(p: float) -> None:
    loss = PrequentialLogLoss()
    with pytest.raises(ValueError):
        loss.update_one(p, True)
    assert loss.n == 0


@pytest.mark.parametrize("kwargs", [{"eps": 0.0}, {"eps": 0.5}, {"window": 0}])
def test_log_loss_parameters_are_validated(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        PrequentialLogLoss(**kwargs)  # type: ignore[arg-type]


def test_nothing_scored_reads_zero() -> None:
    assert PrequentialLogLoss().snapshot() == LogLossSnapshot(
        n=0, log_loss=0.0, window_log_loss=0.0
    )


@settings(max_examples=50, deadline=None)
@given(cases=st.lists(st.tuples(st.floats(0.0, 1.0), st.booleans()), max_size=40))
def test_log_loss_batched_equals_one_by_one(cases: list[tuple[float, bool]]) -> None:
    one, many = PrequentialLogLoss(window=5), PrequentialLogLoss(window=5)
    singles = [one.update_one(p, y) for p, y in cases]
    assert many.update_many([p for p, _ in cases], [y for _, y in cases]) == singles
    assert many.snapshot() == one.snapshot()
