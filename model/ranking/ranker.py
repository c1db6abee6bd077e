"""The served ranker: one object for the worker and for ``intentstream evaluate``.

A checkpoint's transformer, mixed with session-kNN over the training sessions (a
private checkpoint: the items a DP release puts near the history's,
:class:`~model.ranking.transitions.TransitionRanker`) and the user's own recent
items by the weights chosen on the validation split
(:class:`~model.ranking.parts.RankerParts`). With those parts it ranks in two
stages by default (:class:`~model.ranking.candidates.CandidateRanker`: a few
hundred candidates a history, then the mix over them); ``full_ranking`` mixes
over every item. The worker ranks with exactly what ``evaluate`` scores: both
call :func:`served_ranker` on the same checkpoint with the same setting.
"""

from __future__ import annotations

from typing import Protocol

import torch

from model.checkpoint import Checkpoint
from model.ranking.candidates import CandidateRanker
from model.ranking.fusion import FusedRanker, Kind, MemoryPart, Ranker, RecentItems
from model.ranking.knn import SessionKNN
from model.ranking.parts import FusionWeights
from model.ranking.transitions import TransitionRanker
from model.scorer import PrefixRanker


class ServedRanker(Protocol):
    """Next-item probabilities of item-index prefixes: all of them, or the best ``k``."""

    def score_many(self, prefixes: list[list[int]], /) -> torch.Tensor:
        """``(B, N)`` probabilities; ``-inf`` for padding and for items not ranked."""
        ...

    def top_k(self, prefixes: list[list[int]], /, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, k)`` best probabilities and their item indices, best first."""
        ...


def served_ranker(
    checkpoint: Checkpoint,
    *,
    transformer_only: bool = False,
    full_ranking: bool = False,
    bf16: bool = False,
) -> ServedRanker:
    """The checkpoint's ranker over its vocabulary.

    Args:
        checkpoint: a trained checkpoint; without ranker parts it ranks every item
            with the transformer alone.
        transformer_only: ignore the parts (to measure the transformer alone; every
            item ranked).
        full_ranking: mix over every item instead of the candidates.
        bf16: the transformer's pass in bfloat16 (serving on a CPU).
    """
    parts = None if transformer_only else checkpoint.ranking
    weights = parts.weights if parts is not None else FusionWeights()
    n_items = checkpoint.model.config.n_items
    knn: MemoryPart | None = None
    if parts is not None and weights.neighbours > 0:
        if parts.transitions is not None:
            knn = TransitionRanker(parts.transitions, decay=parts.recent_decay)
        elif parts.sessions is not None:
            knn = SessionKNN.from_sessions(parts.sessions, k=parts.k, weighting="linear")
    # A catalogue not much larger than the candidates is cheaper to rank whole.
    small = parts is None or n_items <= 2 * (
        parts.candidates.total + checkpoint.model.config.max_len
    )
    if parts is not None and not (full_ranking or small):
        return CandidateRanker(
            checkpoint.model,
            weights=weights,
            knn=knn,
            popular=torch.from_numpy(parts.popular_items()),
            budget=parts.candidates,
            recent_decay=parts.recent_decay,
            bf16=bf16,
        )
    components: list[tuple[Ranker, Kind, float]] = [
        (PrefixRanker(checkpoint.model, bf16=bf16), "logits", weights.transformer)
    ]
    if knn is not None:
        components.append((knn, "counts", weights.neighbours))
    if parts is not None and weights.recent > 0:
        recent = RecentItems(n_items=n_items, decay=parts.recent_decay)
        components.append((recent, "counts", weights.recent))
    return FusedRanker([part for part in components if part[2] > 0])
