"""The served ranker's mix is the one that is best on validation."""

from __future__ import annotations

import random

import torch

from model.config import ScorerConfig
from model.evaluation.tuning import choose_weights
from model.ranking.knn import SessionKNN
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
