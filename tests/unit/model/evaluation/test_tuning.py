"""The served ranker's mix is the one that is best on validation."""

from __future__ import annotations

import random

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from model.config import ScorerConfig
from model.evaluation.tuning import choose_weights, choose_weights_privately, private_argmax
from model.ranking.knn import SessionKNN
from model.ranking.transitions import TransitionRanker
from model.scorer import SequenceScorer

N_ITEMS = 40


def test_an_untrained_transformer_loses_its_weight_to_knn_and_recent_items() -> None:
    """Sessions where item i is always followed by i + 1: kNN knows it, a random model does not."""
    rng = random.Random(0)
    sessions = []
    for _ in range(400):
        start = rng.randint(1, N_ITEMS - 5)
        sessions.append(list(range(start, start + rng.randint(2, 4))))
    train, held_out = sessions[:300], sessions[300:]
    torch.manual_seed(0)
    untrained = SequenceScorer(ScorerConfig(n_items=N_ITEMS, d_model=16, n_heads=2)).eval()
    knn = SessionKNN(train, n_items=N_ITEMS, weighting="linear")
    prefixes = [s[:-1] for s in held_out]
    targets = torch.tensor([s[-1] for s in held_out])
    best, result, tried = choose_weights(untrained, knn, prefixes, targets)
    assert best.transformer == min(w.transformer for w, _ in tried if w.recent == best.recent)
    assert best.neighbours > best.transformer
    assert result == max((m for _, m in tried), key=lambda m: (m["P@20"], m["MRR@20"]))
    assert result["P@20"] > 90.0


def test_a_private_choice_without_a_transformer_mixes_memory_and_recent_items() -> None:
    """Each item's successor is the next one: the memory knows it; recent items never hold it."""
    pairs = np.arange(1, N_ITEMS - 1)
    memory = sp.csr_matrix(
        (np.full(pairs.size, 50.0, dtype=np.float32), (pairs, pairs + 1)),
        shape=(N_ITEMS, N_ITEMS),
    )
    prefixes = [[i] for i in range(1, N_ITEMS - 1)] * 20
    targets = torch.tensor([p[0] + 1 for p in prefixes])
    best, grid = choose_weights_privately(
        None, TransitionRanker(memory), prefixes, targets, epsilon=5.0
    )
    assert all(w.transformer == 0 for w in grid) and best in grid
    assert best.neighbours > best.recent  # the mixes where the memory outweighs the history win


def test_a_private_choice_without_a_scorable_case_is_still_a_mix_of_the_grid() -> None:
    """A DP vocabulary of a few items can leave no validation prefix to score: no crash."""
    memory = sp.csr_matrix((N_ITEMS, N_ITEMS), dtype=np.float32)
    best, grid = choose_weights_privately(
        None, TransitionRanker(memory), [], torch.zeros(0, dtype=torch.int64), epsilon=0.5
    )
    assert best in grid


def test_private_argmax_finds_a_clear_winner_and_needs_a_positive_epsilon() -> None:
    assert private_argmax([10.0, 5_000.0, 20.0], sensitivity=2.0, epsilon=1.0) == 1
    # At a tiny epsilon the noise, not the scores, decides: both sides win sometimes.
    picks = {private_argmax([0.0, 1.0], sensitivity=2.0, epsilon=1e-3) for _ in range(60)}
    assert picks == {0, 1}
    with pytest.raises(ValueError, match="epsilon"):
        private_argmax([1.0], sensitivity=1.0, epsilon=0.0)
