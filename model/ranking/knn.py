"""Training-free baselines for next-item prediction: popularity and session-kNN.

Both are fitted on the training sequences of an evaluation protocol, as item
indices of an :class:`~model.sessions.ItemVocab`, and score a batch of prefixes
over every index with ``score_many``. Index 0 (padding) always scores ``-inf``.

Session-kNN follows Jannach & Ludewig, "When recurrent neural networks meet the
neighborhood for session-based recommendation" (RecSys 2017): the neighbours of
a prefix are the ``k`` training sessions most similar to it (cosine similarity of
binary item sets), optionally chosen among only the ``sample_size`` most recent
sessions that share an item with it; an item scores the summed similarity of the
neighbours that contain it. ``weighting="linear"`` gives the V-SKNN variant of
Ludewig & Jannach, "Evaluation of session-based recommendation algorithms" (2018):
shared items count with a weight that decays linearly towards the prefix's start.

Everything is a sparse matrix product over the batch: ``prefixes @ sessions.T``
gives the similarities, a per-row top-k keeps the neighbours, and
``neighbours @ sessions`` gives the item scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
import torch

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]

#: How a prefix's items are weighted in the similarity: ``"binary"`` (SKNN) or
#: ``"linear"`` decay, the most recent item 1 and the i-th of L items i / L (V-SKNN).
Weighting = Literal["binary", "linear"]


def item_matrix(
    sequences: Sequence[Sequence[int]], *, n_items: int, weighting: Weighting = "binary"
) -> sp.csr_matrix:
    """``(len(sequences), n_items)`` float32 CSR matrix of each row's item weights.

    ``"binary"``: 1 where a row holds an item. ``"linear"`` (V-SKNN, Ludewig &
    Jannach 2018): the ``i``-th of ``L`` items weighs ``i / L``, so the last item
    weighs 1. A repeated item counts once, with its most recent weight; index 0
    (padding or unknown item) is dropped.

    Args:
        sequences: Item indices per row, oldest first, each in ``[0, n_items)``.
        n_items: Number of item indices, padding included.
        weighting: ``"binary"`` or ``"linear"``.

    Returns:
        The CSR matrix, with sorted column indices and no explicit zeros.

    Raises:
        ValueError: If an index is outside ``[0, n_items)``.

    Examples:
        >>> item_matrix([[1, 2, 1], [0, 3]], n_items=4).toarray().tolist()
        [[0.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
        >>> item_matrix([[1, 2, 1, 3]], n_items=4, weighting="linear").toarray().tolist()
        [[0.0, 0.75, 0.5, 1.0]]
    """
    lengths = np.fromiter((len(seq) for seq in sequences), dtype=np.int64, count=len(sequences))
    columns = np.fromiter(
        (item for seq in sequences for item in seq), dtype=np.int64, count=int(lengths.sum())
    )
    if columns.size and (columns.min() < 0 or columns.max() >= n_items):
        raise ValueError(f"item indices must be in [0, {n_items})")
    rows = np.repeat(np.arange(len(sequences), dtype=np.int64), lengths)
    if weighting == "linear":
        positions = np.arange(columns.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        weights = ((positions + 1) / np.repeat(lengths, lengths)).astype(np.float32)
    else:
        weights = np.ones(columns.size, dtype=np.float32)
    # Sort by (row, item, weight) and keep the last of each (row, item): its latest weight.
    order = np.lexsort((weights, columns, rows))
    rows, columns, weights = rows[order], columns[order], weights[order]
    last = np.ones(columns.size, dtype=bool)
    last[:-1] = (rows[1:] != rows[:-1]) | (columns[1:] != columns[:-1])
    keep = last & (columns != 0)
    return sp.csr_matrix(
        (weights[keep], (rows[keep], columns[keep])), shape=(len(sequences), n_items)
    )


def _padding_masked(scores: FloatArray) -> torch.Tensor:
    tensor = torch.from_numpy(np.ascontiguousarray(scores, dtype=np.float32))
    tensor[:, 0] = float("-inf")
    return tensor


class Popularity:
    """Scores every item by its number of occurrences in the training sequences.

    Args:
        train: Training sequences of item indices.
        n_items: Number of item indices, padding included.

    Examples:
        >>> pop = Popularity([[1, 2, 2], [2, 3]], n_items=4)
        >>> pop.score_many([[1], []]).tolist()
        [[-inf, 1.0, 3.0, 1.0], [-inf, 1.0, 3.0, 1.0]]
    """

    def __init__(self, train: Sequence[Sequence[int]], *, n_items: int) -> None:
        counts = np.zeros(n_items, dtype=np.float32)
        flat = np.fromiter((item for seq in train for item in seq), dtype=np.int64)
        np.add.at(counts, flat, 1.0)
        self.counts = _padding_masked(counts[None, :])[0]

    def score_many(self, prefixes: Sequence[Sequence[int]]) -> torch.Tensor:
        """``(B, N)`` float32 scores; the same popularity row for every prefix."""
        return self.counts.expand(len(prefixes), -1).clone()


class SessionKNN:
    """Session-kNN (SKNN, or V-SKNN with ``weighting="linear"``).

    The similarity of prefix ``P`` and training session ``S`` is the summed
    weight of their shared items over ``sqrt(|P| |S|)`` (set sizes): cosine for
    binary weights.

    Args:
        train: Training sessions as item indices, oldest first (the order decides
            which sessions count as the most recent when sampling).
        n_items: Number of item indices, padding included.
        k: Neighbours per prefix.
        sample_size: If set, neighbours are chosen among only the most recent
            ``sample_size`` training sessions sharing an item with the prefix.
        weighting: Prefix item weights: ``"binary"`` (SKNN) or ``"linear"``
            (V-SKNN, recent items count more; see :func:`item_matrix`).

    Raises:
        ValueError: If ``k`` or ``sample_size`` is below 1.

    Examples:
        >>> knn = SessionKNN([[1, 2], [1, 2], [1, 3], [4, 5]], n_items=6, k=3)
        >>> knn.score_many([[1]]).topk(4).indices.tolist()  # item 2 follows 1 most often
        [[1, 2, 3, 4]]
    """

    def __init__(
        self,
        train: Sequence[Sequence[int]],
        *,
        n_items: int,
        k: int = 100,
        sample_size: int | None = None,
        weighting: Weighting = "binary",
    ) -> None:
        if k < 1 or (sample_size is not None and sample_size < 1):
            raise ValueError("k and sample_size must be >= 1")
        self.k = k
        self.sample_size = sample_size
        self.n_items = n_items
        self.weighting: Weighting = weighting
        self._index(item_matrix(train, n_items=n_items))

    @classmethod
    def from_sessions(
        cls,
        sessions: sp.csr_matrix,
        *,
        k: int = 100,
        sample_size: int | None = None,
        weighting: Weighting = "binary",
    ) -> SessionKNN:
        """The same index from a stored :func:`item_matrix` of the training sessions."""
        knn = cls([], n_items=sessions.shape[1], k=k, sample_size=sample_size, weighting=weighting)
        knn._index(sessions.tocsr())
        return knn

    def _index(self, sessions: sp.csr_matrix) -> None:
        self.sessions = sessions
        lengths = np.asarray(self.sessions.getnnz(axis=1), dtype=np.float32)
        # Cosine on sets: |P & S| / sqrt(|P| |S|); fold 1/sqrt(|S|) into the matrix once.
        inv_norm = np.divide(1.0, np.sqrt(lengths), out=np.zeros_like(lengths), where=lengths > 0)
        self._items_by_session = (sp.diags(inv_norm) @ self.sessions).T.tocsr()

    def similarities(self, prefixes: Sequence[Sequence[int]]) -> sp.csr_matrix:
        """``(B, S)`` float32 CSR similarity of each prefix to each training session."""
        query = item_matrix(prefixes, n_items=self.n_items, weighting=self.weighting)
        lengths = np.asarray(query.getnnz(axis=1), dtype=np.float32)
        inv_norm = np.divide(1.0, np.sqrt(lengths), out=np.zeros_like(lengths), where=lengths > 0)
        sims = sp.csr_matrix(sp.diags(inv_norm) @ query @ self._items_by_session)
        sims.sort_indices()
        return sims

    def neighbours(self, prefixes: Sequence[Sequence[int]]) -> sp.csr_matrix:
        """``(B, S)`` float32 CSR holding only each prefix's top-``k`` similarities."""
        sims = self.similarities(prefixes)
        if self.sample_size is not None:
            sims = _keep_last_per_row(sims, self.sample_size)
        return _top_k_per_row(sims, self.k)

    def item_scores(self, prefixes: Sequence[Sequence[int]]) -> sp.csr_matrix:
        """``(B, N)`` float32 CSR summed neighbour similarity per item, columns sorted.

        Only the items of the neighbours are stored: a few hundred a prefix, where
        :meth:`score_many` fills all ``N``.
        """
        scores = sp.csr_matrix(self.neighbours(prefixes) @ self.sessions)
        scores.sort_indices()
        return scores

    def score_many(self, prefixes: Sequence[Sequence[int]]) -> torch.Tensor:
        """``(B, N)`` float32 summed neighbour similarity per item; padding is ``-inf``."""
        return _padding_masked(self.item_scores(prefixes).toarray())


def row_positions(matrix: sp.csr_matrix) -> tuple[IntArray, IntArray]:
    """Row of each stored entry and its position within that row."""
    counts = np.diff(matrix.indptr).astype(np.int64)
    rows = np.repeat(np.arange(matrix.shape[0], dtype=np.int64), counts)
    positions = np.arange(matrix.nnz, dtype=np.int64) - matrix.indptr[rows]
    return rows, positions


def _keep_last_per_row(matrix: sp.csr_matrix, keep: int) -> sp.csr_matrix:
    """Keep each row's ``keep`` entries of highest column index (the most recent sessions)."""
    counts = np.diff(matrix.indptr).astype(np.int64)
    if counts.size == 0 or counts.max() <= keep:
        return matrix
    rows, positions = row_positions(matrix)
    mask = positions >= counts[rows] - keep
    return sp.csr_matrix(
        (matrix.data[mask], (rows[mask], matrix.indices[mask])), shape=matrix.shape
    )


def packed_rows(matrix: sp.csr_matrix, *, width: int = 0) -> tuple[FloatArray, IntArray]:
    """Each row's stored values and columns packed to the left of ``(B, W)`` arrays.

    ``W`` is the longest row, or ``width`` if larger; the rest is ``-inf`` (values)
    and 0 (columns), so per-row selections run on dense arrays.

    Examples:
        >>> values, columns = packed_rows(sp.csr_matrix([[0, 5, 0, 3]]), width=3)
        >>> values.tolist(), columns.tolist()
        ([[5.0, 3.0, -inf]], [[1, 3, 0]])
    """
    rows, positions = row_positions(matrix)
    width = max(int(positions.max(initial=-1)) + 1, width)
    values = np.full((matrix.shape[0], width), -np.inf, dtype=np.float32)
    columns = np.zeros((matrix.shape[0], width), dtype=np.int64)
    values[rows, positions] = matrix.data
    columns[rows, positions] = matrix.indices
    return values, columns


def _top_k_per_row(matrix: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep each row's ``k`` largest entries, packing rows densely for ``argpartition``."""
    counts = np.diff(matrix.indptr).astype(np.int64)
    if counts.size == 0 or counts.max() <= k:
        return matrix
    values, columns = packed_rows(matrix)
    top = np.argpartition(-values, k - 1, axis=1)[:, :k]
    top_values = np.take_along_axis(values, top, axis=1)
    top_columns = np.take_along_axis(columns, top, axis=1)
    keep = np.isfinite(top_values)
    top_rows = np.broadcast_to(np.arange(matrix.shape[0])[:, None], top.shape)
    return sp.csr_matrix(
        (top_values[keep], (top_rows[keep], top_columns[keep])), shape=matrix.shape
    )
