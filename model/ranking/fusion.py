"""Late fusion of rankers: a weighted mix of their score distributions.

The transformer and session-kNN err differently (the model generalises across
sessions, kNN copies what similar sessions did next), so a convex mix of their
next-item distributions beats either alone. Each ranker's scores become a
distribution first (softmax for logits, row-normalised for non-negative kNN
scores), so the mixing weight means the same for every prefix.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

import scipy.sparse as sp
import torch

from model.batches import HistoryBatch, pad_histories

Kind = Literal["logits", "counts"]


class Ranker(Protocol):
    """Scores a batch of item-index prefixes over every item: ``(B, N)``."""

    def score_many(self, prefixes: list[list[int]], /) -> torch.Tensor:
        """``(B, N)`` scores; padding is ``-inf``."""
        ...


class MemoryPart(Ranker, Protocol):
    """The ranker's memory part (session-kNN, or a private checkpoint's released transitions)."""

    n_items: int

    def item_scores(self, prefixes: Sequence[Sequence[int]], /) -> sp.csr_matrix:
        """``(B, N)`` non-negative CSR scores, columns sorted; only the items it scores."""
        ...


def as_distribution(scores: torch.Tensor, kind: Kind) -> torch.Tensor:
    """Rows of ``scores`` as probabilities.

    Examples:
        >>> as_distribution(torch.tensor([[float("-inf"), 1.0, 3.0]]), "counts").tolist()
        [[0.0, 0.25, 0.75]]
    """
    if kind == "logits":
        return torch.softmax(scores.float(), dim=-1)
    finite = torch.nan_to_num(scores.float(), neginf=0.0).clamp_min(0.0)
    total = finite.sum(dim=-1, keepdim=True)
    return torch.where(total > 0, finite / total.clamp_min(1e-12), finite)


class FusedRanker:
    """``sum_i w_i * distribution_i``, with weights summing to one."""

    def __init__(self, parts: Sequence[tuple[Ranker, Kind, float]]) -> None:
        total = sum(weight for _, _, weight in parts)
        if not parts or total <= 0 or any(weight < 0 for _, _, weight in parts):
            raise ValueError("need at least one ranker and non-negative weights summing > 0")
        self._parts = [(ranker, kind, weight / total) for ranker, kind, weight in parts]

    def score_many(self, prefixes: list[list[int]], /) -> torch.Tensor:
        """``(B, N)`` fused probabilities; padding (index 0) is ``-inf``."""
        fused = torch.stack(
            [
                weight * as_distribution(ranker.score_many(prefixes), kind)
                for ranker, kind, weight in self._parts
            ]
        ).sum(dim=0)
        fused[:, 0] = float("-inf")
        return fused

    def top_k(self, prefixes: list[list[int]], /, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, k)`` best fused probabilities and their item indices, best first."""
        top = self.score_many(prefixes).topk(k, dim=-1)
        return top.values, top.indices


class RecentItems:
    """Items already in the prefix, weighted ``decay ** distance from the end``.

    20.5 % of Diginetica's test targets already occur in their prefix; this part
    of the fusion says so directly.

    Examples:
        >>> RecentItems(n_items=4).score_many([[1, 2, 1]])[0, 1:].tolist()
        [1.25, 0.5, 0.0]
    """

    def __init__(self, *, n_items: int, decay: float = 0.5) -> None:
        if not 0 < decay <= 1:
            raise ValueError("decay must be in (0, 1]")
        self.n_items = n_items
        self.decay = decay

    def score_many(self, prefixes: list[list[int]], /) -> torch.Tensor:
        """``(B, N)`` recency-weighted counts; padding is ``-inf``."""
        batch = pad_histories(prefixes, max_len=max(len(prefix) for prefix in prefixes))
        scores = torch.zeros(len(prefixes), self.n_items)
        scores.scatter_add_(1, batch.items, recency_weights(batch, self.decay))
        scores[:, 0] = float("-inf")
        return scores


def recency_weights(batch: HistoryBatch, decay: float) -> torch.Tensor:
    """``(B, T)`` weight ``decay ** distance from the latest event`` of each event; 0 for padding.

    Examples:
        >>> recency_weights(pad_histories([[4, 5, 6], [7]], max_len=3), 0.5).tolist()
        [[0.25, 0.5, 1.0], [1.0, 0.0, 0.0]]
    """
    positions = torch.arange(batch.items.shape[1])
    distance = (batch.lengths[:, None] - 1 - positions).clamp_min(0)
    return torch.pow(decay, distance.float()).masked_fill(batch.items == 0, 0.0)
