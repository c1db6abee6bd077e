"""Choosing the served ranker's mix on the validation split, never on test cases.

The transformer and session-kNN err differently, and a fifth of next items are
items the shopper already saw: every mix on a grid of (transformer vs kNN,
recent items) is scored on the validation prefixes, and the best P@20 (then
MRR@20) wins. Each part's distribution is computed once per chunk of prefixes;
the grid only re-weights them.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence

import torch

from model.evaluation.metrics import RankingMetrics
from model.ranking.fusion import RecentItems, as_distribution
from model.ranking.knn import SessionKNN
from model.ranking.parts import FusionWeights
from model.scorer import PrefixRanker, SequenceScorer

log = logging.getLogger(__name__)

#: Weight of the transformer against session-kNN.
TRANSFORMER_WEIGHTS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
#: Weight of the recent-items part.
RECENT_WEIGHTS = (0.0, 0.1, 0.2, 0.3)
CHUNK = 1024


def choose_weights(
    model: SequenceScorer,
    knn: SessionKNN,
    prefixes: Sequence[list[int]],
    targets: torch.Tensor,
    *,
    recent_decay: float = 0.5,
) -> tuple[FusionWeights, dict[str, float], list[tuple[FusionWeights, dict[str, float]]]]:
    """The best mix on ``prefixes`` -> ``targets``, its metrics, and every mix tried.

    Args:
        model: the trained transformer.
        knn: session-kNN over sessions that exclude the validation sessions.
        prefixes: validation prefixes (item indices of the model).
        targets: their next items.
        recent_decay: of the recent-items part.
    """
    grid = [
        FusionWeights.mix(transformer=w, recent=r)
        for w, r in itertools.product(TRANSFORMER_WEIGHTS, RECENT_WEIGHTS)
    ]
    metrics = [RankingMetrics() for _ in grid]
    transformer = PrefixRanker(model)
    recent = RecentItems(n_items=model.config.n_items, decay=recent_decay)
    for start in range(0, len(prefixes), CHUNK):
        chunk = list(prefixes[start : start + CHUNK])
        chunk_targets = targets[start : start + CHUNK]
        parts = (
            as_distribution(transformer.score_many(chunk), "logits"),
            as_distribution(knn.score_many(chunk), "counts"),
            as_distribution(recent.score_many(chunk), "counts"),
        )
        for weights, metric in zip(grid, metrics, strict=True):
            mixed = (
                weights.transformer * parts[0]
                + weights.neighbours * parts[1]
                + weights.recent * parts[2]
            )
            mixed[:, 0] = float("-inf")
            metric.update(mixed, chunk_targets)
    tried = [(weights, metric.result()) for weights, metric in zip(grid, metrics, strict=True)]
    best, result = max(tried, key=lambda pair: (pair[1]["P@20"], pair[1]["MRR@20"]))
    log.info("served ranker mix chosen on validation: %s, %s", best, result)
    return best, result, tried
