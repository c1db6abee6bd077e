"""Popularity and session-kNN: obvious answers on tiny data, and a readable reference."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from model.ranking.knn import Popularity, SessionKNN, Weighting, item_matrix

A, B, C, D, E = 1, 2, 3, 4, 5


def _reference_scores(
    train: list[list[int]],
    prefix: list[int],
    *,
    n_items: int,
    sample_size: int | None,
    weighting: Weighting,
) -> list[float]:
    """SKNN one prefix at a time with sets and dicts, every candidate kept (k = all)."""
    weights: dict[int, float] = {}
    for position, item in enumerate(prefix):
        weights[item] = (position + 1) / len(prefix) if weighting == "linear" else 1.0
    weights.pop(0, None)
    candidates = [i for i, session in enumerate(train) if weights.keys() & set(session)]
    if sample_size is not None:
        candidates = candidates[-sample_size:]
    scores = [0.0] * n_items
    for i in candidates:
        session = set(train[i]) - {0}
        shared = sum(w for item, w in weights.items() if item in session)
        similarity = shared / math.sqrt(len(weights) * len(session))
        for item in session:
            scores[item] += similarity
    scores[0] = -math.inf
    return scores


def test_item_matrix_rejects_out_of_range_indices() -> None:
    with pytest.raises(ValueError, match="item indices"):
        item_matrix([[1, 6]], n_items=6)


def test_popularity_ranks_by_count_and_never_recommends_padding() -> None:
    pop = Popularity([[A, B], [B, C], [B]], n_items=6)
    scores = pop.score_many([[A], [], [E, D]])
    assert scores.shape == (3, 6)
    assert scores.dtype == torch.float32
    assert scores[:, 0].tolist() == [-math.inf] * 3
    assert scores.argmax(dim=1).tolist() == [B, B, B]
    assert scores[0].tolist() == [-math.inf, 1.0, 3.0, 1.0, 0.0, 0.0]


def test_sknn_recommends_what_followed_the_prefix_in_similar_sessions() -> None:
    train = [[A, B]] * 5 + [[A, C]] + [[D, E]] * 10
    knn = SessionKNN(train, n_items=6, k=100)
    scores = knn.score_many([[A], [D]])
    # Every neighbour of [A] holds A itself (seen items are not filtered, as in the
    # protocol); after it comes B (5 sessions), then C (1); D and E share nothing.
    assert scores[0].topk(3).indices.tolist() == [A, B, C]
    assert scores[0, D] == scores[0, E] == 0.0
    assert scores[1].topk(2).indices.tolist() in ([D, E], [E, D])
    assert scores[:, 0].tolist() == [-math.inf, -math.inf]


def test_sknn_keeps_only_the_k_most_similar_sessions() -> None:
    # For prefix [A, B]: [A, B] has cosine 1, [A, C, D, E] has 1/sqrt(8).
    knn = SessionKNN([[A, C, D, E], [A, B]], n_items=6, k=1)
    scores = knn.score_many([[A, B]])
    assert scores[0].tolist() == pytest.approx([-math.inf, 1.0, 1.0, 0.0, 0.0, 0.0])


def test_sknn_samples_the_most_recent_sessions() -> None:
    # The older session is the more similar one, but only the latest is sampled.
    knn = SessionKNN([[A, B], [A, C, D]], n_items=6, k=10, sample_size=1)
    assert knn.score_many([[A, B]])[0, B] == 0.0
    assert knn.score_many([[A, B]])[0, C] > 0.0


def test_vsknn_weights_recent_prefix_items_more() -> None:
    train = [[A, C], [B, D]]
    binary = SessionKNN(train, n_items=6, weighting="binary").score_many([[A, B]])[0]
    linear = SessionKNN(train, n_items=6, weighting="linear").score_many([[A, B]])[0]
    assert binary[C] == pytest.approx(binary[D].item())
    assert linear[D] == pytest.approx(2 * linear[C].item())


def test_empty_and_unknown_prefixes_score_nothing() -> None:
    knn = SessionKNN([[A, B]], n_items=6)
    scores = knn.score_many([[], [0, 0]])
    assert torch.equal(scores[:, 1:], torch.zeros(2, 5))


def test_invalid_parameters_raise() -> None:
    with pytest.raises(ValueError, match="k and sample_size"):
        SessionKNN([[A]], n_items=6, k=0)
    with pytest.raises(ValueError, match="k and sample_size"):
        SessionKNN([[A]], n_items=6, sample_size=0)


_sequences = st.lists(st.lists(st.integers(1, 7), min_size=1, max_size=5), min_size=1, max_size=12)


@settings(max_examples=60, deadline=None)
@given(
    train=_sequences,
    prefixes=_sequences,
    sample_size=st.none() | st.integers(1, 6),
    weighting=st.sampled_from(["binary", "linear"]),
)
def test_batched_sknn_matches_the_per_prefix_reference(
    train: list[list[int]],
    prefixes: list[list[int]],
    sample_size: int | None,
    weighting: Weighting,
) -> None:
    knn = SessionKNN(train, n_items=8, k=len(train), sample_size=sample_size, weighting=weighting)
    expected = [
        _reference_scores(train, p, n_items=8, sample_size=sample_size, weighting=weighting)
        for p in prefixes
    ]
    torch.testing.assert_close(knn.score_many(prefixes), torch.tensor(expected))


@settings(max_examples=60, deadline=None)
@given(train=_sequences, prefixes=_sequences, k=st.integers(1, 4))
def test_top_k_keeps_the_k_largest_similarities(
    train: list[list[int]], prefixes: list[list[int]], k: int
) -> None:
    knn = SessionKNN(train, n_items=8, k=k)
    similarities = knn.similarities(prefixes).toarray()
    kept = knn.neighbours(prefixes).toarray()
    for row, kept_row in zip(similarities, kept, strict=True):
        expected = sorted(row[row > 0], reverse=True)[:k]
        assert sorted(kept_row[kept_row > 0], reverse=True) == pytest.approx(expected)
