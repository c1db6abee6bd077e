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

import opendp.prelude as dp
import torch

from model.evaluation.metrics import RankingMetrics, selection_score
from model.ranking.fusion import Kind, MemoryPart, Ranker, RecentItems, as_distribution
from model.ranking.parts import FusionWeights
from model.scorer import PrefixRanker, SequenceScorer
from model.threshold import check_positive, loss_target

log = logging.getLogger(__name__)

#: Weight of the transformer against session-kNN.
TRANSFORMER_WEIGHTS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
#: Weight of the recent-items part.
RECENT_WEIGHTS = (0.1, 0.2, 0.3, 0.4)
CHUNK = 1024
#: The mixes a private choice picks from: transformer against memory, then recent items.
PRIVATE_GRID = tuple(
    FusionWeights.mix(transformer=t, recent=r)
    for t in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    for r in (0.1, 0.3, 0.5, 0.7)
)


def choose_weights(
    model: SequenceScorer,
    knn: MemoryPart,
    prefixes: Sequence[list[int]],
    targets: torch.Tensor,
    *,
    recent_decay: float = 0.5,
) -> tuple[FusionWeights, dict[str, float], list[tuple[FusionWeights, dict[str, float]]]]:
    """The best mix on ``prefixes`` -> ``targets``, its metrics, and every mix tried.

    Args:
        model: the trained transformer.
        knn: the memory part (session-kNN), over sessions that exclude the validation ones.
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


def choose_weights_privately(
    model: SequenceScorer | None,
    memory: MemoryPart,
    prefixes: Sequence[list[int]],
    targets: torch.Tensor,
    *,
    epsilon: float,
    recent_decay: float = 0.5,
) -> tuple[FusionWeights, list[FusionWeights]]:
    """A mix chosen on validation cases with epsilon-DP per validation session.

    Every mix of :data:`PRIVATE_GRID` is scored by its hits@20 plus reciprocal
    ranks@20 on ``prefixes`` (one case a session, so a session moves each score by
    at most 2), and OpenDP's report-noisy-max releases only which mix won. No
    metric of the validation cases is released.

    Args:
        model: the DP-trained transformer; None: mixes of memory and recent items only.
        memory: the released transitions (post-processing of a DP release).
        prefixes, targets: validation cases, one per held-out session (none: a
            mix drawn by the same mechanism from equal scores).
        epsilon: the choice's privacy loss per validation session.
        recent_decay: of the recent-items part.

    Returns:
        The chosen mix and the grid it was chosen from.
    """
    grid = [w for w in PRIVATE_GRID if model is not None or w.transformer == 0]
    totals = [0.0] * len(grid)  # no case to score (a tiny DP vocabulary): the noise decides
    if prefixes:
        tried = _Parts(model, memory, recent_decay).score(grid, prefixes, targets)
        scores = [r["P@20"] + r["MRR@20"] for _, r in tried]  # percent of the cases
        totals = [score * len(prefixes) / 100 for score in scores]
    chosen = private_argmax(totals, sensitivity=2.0, epsilon=epsilon)
    log.info("served ranker mix chosen privately (epsilon %g): %s", epsilon, grid[chosen])
    return grid[chosen], grid


def private_argmax(scores: Sequence[float], *, sensitivity: float, epsilon: float) -> int:
    """OpenDP's report-noisy-max (exponential noise) of ``scores``, epsilon-DP.

    Args:
        scores: one per candidate; adding or removing one contributor moves each
            by at most ``sensitivity``, all in the same direction.
        epsilon: the choice's privacy loss, certified by OpenDP's privacy map.
    """
    check_positive("epsilon", epsilon)
    dp.enable_features("contrib")
    space = (dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.linf_distance(T=float))
    target = loss_target(epsilon)

    def certified(scale: float) -> bool:
        built = dp.m.make_noisy_max(*space, dp.max_divergence(), scale=scale)
        return float(built.map(sensitivity)) <= target  # type: ignore[no-untyped-call]

    scale = float(dp.binary_search(certified, bounds=(1e-6, 1e9), T=float))
    chosen = dp.m.make_noisy_max(*space, dp.max_divergence(), scale=scale)(
        [float(s) for s in scores]
    )
    return int(chosen)


def _quality(tried: tuple[FusionWeights, dict[str, float]]) -> float:
    return selection_score(tried[1])


class _Parts:
    """The three parts' distributions over chunks of prefixes, mixed by each weight set."""

    def __init__(self, model: SequenceScorer | None, knn: MemoryPart, recent_decay: float) -> None:
        n_items = knn.n_items if model is None else model.config.n_items
        self._rankers: tuple[tuple[Ranker, Kind], ...] = (
            *(() if model is None else ((PrefixRanker(model), "logits"),)),
            (knn, "counts"),
            (RecentItems(n_items=n_items, decay=recent_decay), "counts"),
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
            if len(parts) == 2:  # no transformer
                parts.insert(0, torch.zeros_like(parts[0]))
            for weights, metric in zip(grid, metrics, strict=True):
                mixed = (
                    weights.transformer * parts[0]
                    + weights.neighbours * parts[1]
                    + weights.recent * parts[2]
                )
                mixed[:, 0] = float("-inf")
                metric.update(mixed, targets[start : start + CHUNK])
        return [(weights, metric.result()) for weights, metric in zip(grid, metrics, strict=True)]
