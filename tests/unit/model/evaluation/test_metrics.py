"""Ranking metrics: hand-computed ranks, ties, K boundaries, and a readable reference."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from model.evaluation.metrics import (
    MISS_RANK,
    RankingMetrics,
    Ties,
    hit_at,
    ndcg_at,
    reciprocal_rank_at,
    target_ranks,
)


def _reference_rank(scores: list[float], target: int, ties: Ties) -> int:
    """Position of the target in a descending sort, ties placed after (before) it."""
    if ties == "pessimistic":
        order = sorted(range(len(scores)), key=lambda j: (-scores[j], j == target))
    else:
        order = sorted(range(len(scores)), key=lambda j: (-scores[j], j != target))
    return order.index(target) + 1


def test_ranks_by_hand() -> None:
    scores = torch.tensor(
        [
            [-math.inf, 0.9, 0.1, 0.5, 0.3],  # target 3: only 0.9 above -> rank 2
            [-math.inf, 0.2, 0.2, 0.2, 0.1],  # target 2 ties with 1 and 3
            [-math.inf, 0.0, 0.0, 0.0, 0.0],  # all tied
            [-math.inf, 1.0, 2.0, 3.0, 4.0],  # target 1 is last
        ]
    )
    targets = torch.tensor([3, 2, 4, 1])
    assert target_ranks(scores, targets).tolist() == [2, 3, 4, 4]
    assert target_ranks(scores, targets, ties="optimistic").tolist() == [2, 1, 1, 4]


def test_padding_or_nan_target_is_a_miss_even_among_few_items() -> None:
    # Regression: ranking such targets N (last) made them hits whenever N <= K.
    scores = torch.tensor([[5.0, 1.0, 2.0], [0.0, math.nan, 2.0]])
    targets = torch.tensor([0, 1])
    for ties in ("pessimistic", "optimistic"):
        assert target_ranks(scores, targets, ties=ties).tolist() == [MISS_RANK, MISS_RANK]
        metrics = RankingMetrics(ties=ties)
        metrics.update(scores, targets)
        assert set(metrics.result().values()) == {0.0}


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="expected scores"):
        target_ranks(torch.zeros(2, 3), torch.zeros(3, dtype=torch.int64))


def test_k_boundaries() -> None:
    ranks = torch.tensor([1, 2, 10, 11, 20, 21])
    assert hit_at(ranks, 10).tolist() == [1, 1, 1, 0, 0, 0]
    assert hit_at(ranks, 20).tolist() == [1, 1, 1, 1, 1, 0]
    assert reciprocal_rank_at(ranks, 20).tolist() == pytest.approx([1, 0.5, 0.1, 1 / 11, 0.05, 0])
    assert ndcg_at(ranks, 10).tolist() == pytest.approx(
        [1.0, 1 / math.log2(3), 1 / math.log2(11), 0, 0, 0]
    )


def test_accumulates_over_batches_in_percent() -> None:
    # Item j scores 25 - j (padding -inf), so target index t has rank t: 1, 10, 11, 21.
    scores = torch.arange(25, 0, -1, dtype=torch.float32).expand(4, -1).clone()
    scores[:, 0] = -math.inf
    targets = torch.tensor([1, 10, 11, 21])
    metrics = RankingMetrics()
    metrics.update(scores[:2], targets[:2])
    metrics.update(scores[2:], targets[2:])
    assert metrics.count == 4
    assert target_ranks(scores, targets).tolist() == [1, 10, 11, 21]
    result = metrics.result()
    assert result["P@20"] == pytest.approx(75.0)
    assert result["HR@10"] == pytest.approx(50.0)
    assert result["MRR@20"] == pytest.approx(100 * (1 + 1 / 10 + 1 / 11) / 4)
    assert result["NDCG@10"] == pytest.approx(100 * (1 + 1 / math.log2(11)) / 4)


def test_constant_scores_are_never_hits_with_pessimistic_ties() -> None:
    # Regression: 1 + count(score > target) credits every tie, so a constant scorer got 100 %.
    scores = torch.zeros(3, 50)
    targets = torch.tensor([1, 2, 3])
    pessimistic, optimistic = RankingMetrics(), RankingMetrics(ties="optimistic")
    pessimistic.update(scores, targets)
    optimistic.update(scores, targets)
    assert pessimistic.result()["P@20"] == 0.0
    assert optimistic.result()["P@20"] == 100.0


def test_result_without_cases_raises() -> None:
    with pytest.raises(ValueError, match="no cases"):
        RankingMetrics().result()


@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(2, 6).flatmap(
        lambda n: st.lists(
            st.tuples(st.lists(st.integers(0, 3), min_size=n, max_size=n), st.integers(1, n - 1)),
            min_size=1,
            max_size=5,
        )
    ),
    ties=st.sampled_from(["pessimistic", "optimistic"]),
)
def test_ranks_match_a_sorting_reference(rows: list[tuple[list[int], int]], ties: Ties) -> None:
    scores = torch.tensor([row for row, _ in rows], dtype=torch.float32)
    targets = torch.tensor([target for _, target in rows])
    expected = [_reference_rank([float(s) for s in row], t, ties) for row, t in rows]
    assert target_ranks(scores, targets, ties=ties).tolist() == expected


def test_private_metrics_are_near_the_exact_ones_and_carry_fresh_noise() -> None:
    metrics = RankingMetrics()
    ranks = torch.tensor([1, 5, 30] * 3_000)
    metrics.update_ranks(ranks)
    exact = metrics.result()
    first, second = (metrics.private_result(epsilon=1.0) for _ in range(2))
    for name, value in exact.items():
        assert first[name] == pytest.approx(value, abs=0.5)
    assert first != second  # released with noise, drawn again each time
    with pytest.raises(ValueError, match="no cases"):
        RankingMetrics().private_result(epsilon=1.0)
