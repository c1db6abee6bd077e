"""The private served ranker's memory part: items that sessions hold near the shopper's items.

Where a non-private checkpoint keeps session-kNN over its training sessions, a
DP-trained one keeps a DP release of which items sessions hold near which
(:mod:`model.training.transitions`). A history's scores are its items' rows of
that release, each row normalised to sum 1 and weighted ``decay ** distance``
from the latest item, so the items near what the shopper just saw weigh most.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
import torch


class TransitionRanker:
    """Scores of the items a released pair-count matrix puts near each history's items.

    Args:
        transitions: ``(N, N)`` non-negative CSR counts, row = an item, column =
            the items held near it.
        decay: a history item ``d`` steps before the latest weighs ``decay ** d``.

    Examples:
        >>> counts = sp.csr_matrix(np.array([[0, 0, 0], [0, 0, 3], [0, 1, 0]], dtype=np.float32))
        >>> TransitionRanker(counts).score_many([[1]]).tolist()
        [[-inf, 0.0, 1.0]]
    """

    def __init__(self, transitions: sp.csr_matrix, *, decay: float = 0.5) -> None:
        totals = np.asarray(transitions.sum(axis=1), dtype=np.float64).ravel()
        inverse = np.divide(1.0, totals, out=np.zeros_like(totals), where=totals > 0)
        self._rows = sp.csr_matrix(sp.diags(inverse.astype(np.float32)) @ transitions)
        self._popularity = np.asarray(transitions.sum(axis=0), dtype=np.float64).ravel()
        self.n_items = int(transitions.shape[1])
        self.decay = decay

    def _history_weights(self, prefixes: Sequence[Sequence[int]]) -> sp.csr_matrix:
        lengths = np.fromiter((len(p) for p in prefixes), dtype=np.int64, count=len(prefixes))
        items = np.fromiter((i for p in prefixes for i in p), dtype=np.int64, count=lengths.sum())
        rows = np.repeat(np.arange(len(prefixes)), lengths)
        starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
        distance = np.repeat(lengths, lengths) - 1 - (np.arange(items.size) - starts)
        weights = (self.decay**distance).astype(np.float32)
        keep = items != 0
        return sp.csr_matrix(
            (weights[keep], (rows[keep], items[keep])), shape=(len(prefixes), self.n_items)
        )

    def item_scores(self, prefixes: Sequence[Sequence[int]]) -> sp.csr_matrix:
        """``(B, N)`` float32 CSR scores, columns sorted; only items with a released pair."""
        scores = sp.csr_matrix(self._history_weights(prefixes) @ self._rows)
        scores.sort_indices()
        return scores

    def score_many(self, prefixes: Sequence[Sequence[int]]) -> torch.Tensor:
        """``(B, N)`` float32 scores of every item; padding is ``-inf``."""
        scores = torch.from_numpy(self.item_scores(prefixes).toarray().astype(np.float32))
        scores[:, 0] = float("-inf")
        return scores

    def popular_items(self) -> np.ndarray:
        """Item indices by their summed released counts, most first (none without a pair)."""
        order = np.argsort(-self._popularity, kind="stable")
        return np.asarray(order[(self._popularity[order] > 0) & (order != 0)], dtype=np.int64)
