"""Choosing the served ranker's mix on the validation split, never on test cases.

The transformer and session-kNN err differently, and a fifth of next items are
items the shopper already saw: the transformer's weight against kNN is chosen
first (no recent items), then the recent items' weight for it, each by the best
P@20 + MRR@20 on the validation prefixes. Each part's distribution is
computed once per chunk of prefixes; the mixes only re-weight them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from model.evaluation.metrics import RankingMetrics, selection_score
from model.ranking.fusion import Kind, Ranker, RecentItems, as_distribution
from model.ranking.knn import SessionKNN
from model.ranking.parts import FusionWeights
from model.scorer import PrefixRanker, SequenceScorer

log = logging.getLogger(__name__)

#: Weight of the transformer against session-kNN.
TRANSFORMER_WEIGHTS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
#: Weight of the recent-items part.
RECENT_WEIGHTS = (0.1, 0.2, 0.3, 0.4)
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
    parts = _Parts(model, knn, recent_decay)
    tried = parts.score(
        [FusionWeights.mix(transformer=w, recent=0.0) for w in TRANSFORMER_WEIGHTS],
        prefixes,
        targets,
    )
    best, result = max(tried, key=_quality)
    tried += parts.score(
        [FusionWeights.mix(transformer=best.transformer, recent=r) for r in RECENT_WEIGHTS],
        prefixes,
        targets,
    )
    best, result = max(tried, key=_quality)
    log.info("served ranker mix chosen on validation: %s, %s", best, result)
    return best, result, tried


def _quality(tried: tuple[FusionWeights, dict[str, float]]) -> float:
    return selection_score(tried[1])


class _Parts:
    """The three parts' distributions over chunks of prefixes, mixed by each weight set."""

    def __init__(self, model: SequenceScorer, knn: SessionKNN, recent_decay: float) -> None:
        self._rankers: tuple[tuple[Ranker, Kind], ...] = (
            (PrefixRanker(model), "logits"),
            (knn, "counts"),
            (RecentItems(n_items=model.config.n_items, decay=recent_decay), "counts"),
        )

    def score(
        self, grid: list[FusionWeights], prefixes: Sequence[list[int]], targets: torch.Tensor
    ) -> list[tuple[FusionWeights, dict[str, float]]]:
        metrics = [RankingMetrics() for _ in grid]
        for start in range(0, len(prefixes), CHUNK):
            chunk = list(prefixes[start : start + CHUNK])
            parts = [
                as_distribution(ranker.score_many(chunk), kind) for ranker, kind in self._rankers
            ]
            for weights, metric in zip(grid, metrics, strict=True):
                mixed = (
                    weights.transformer * parts[0]
                    + weights.neighbours * parts[1]
                    + weights.recent * parts[2]
                )
                mixed[:, 0] = float("-inf")
                metric.update(mixed, targets[start : start + CHUNK])
        return [(weights, metric.result()) for weights, metric in zip(grid, metrics, strict=True)]
