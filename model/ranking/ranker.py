"""The served ranker: one object for the worker and for ``intentstream evaluate``.

A checkpoint's transformer, mixed with session-kNN over the training sessions and
the user's own recent items by the weights chosen on the validation split
(:class:`~model.ranking.parts.RankerParts`). The worker ranks with exactly what
``evaluate`` scores: both call :func:`served_ranker` on the same checkpoint.
"""

from __future__ import annotations

from model.checkpoint import Checkpoint
from model.ranking.fusion import FusedRanker, Kind, Ranker, RecentItems
from model.ranking.knn import SessionKNN
from model.ranking.parts import FusionWeights
from model.scorer import PrefixRanker


def served_ranker(
    checkpoint: Checkpoint, *, transformer_only: bool = False, bf16: bool = False
) -> FusedRanker:
    """The checkpoint's ranker: ``(B, N)`` next-item probabilities over its vocabulary.

    Args:
        checkpoint: a trained checkpoint; without ranker parts it ranks with the
            transformer alone.
        transformer_only: ignore the parts (to measure the transformer alone).
        bf16: the transformer's pass in bfloat16 (serving on a CPU).
    """
    parts = None if transformer_only else checkpoint.ranking
    weights = parts.weights if parts is not None else FusionWeights()
    components: list[tuple[Ranker, Kind, float]] = [
        (PrefixRanker(checkpoint.model, bf16=bf16), "logits", weights.transformer)
    ]
    if parts is not None and parts.sessions is not None and weights.neighbours > 0:
        knn = SessionKNN.from_sessions(parts.sessions, k=parts.k, weighting="linear")
        components.append((knn, "counts", weights.neighbours))
    if parts is not None and weights.recent > 0:
        recent = RecentItems(n_items=checkpoint.model.config.n_items, decay=parts.recent_decay)
        components.append((recent, "counts", weights.recent))
    return FusedRanker([part for part in components if part[2] > 0])
