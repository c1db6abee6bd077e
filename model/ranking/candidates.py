"""Two-stage serving: a few hundred candidates per shopper, then the served ranker on those.

Full ranking multiplies every shopper's query by the whole item table and mixes
three ``(B, N)`` distributions, most of it on items no part of the ranker would
put near the top. The candidate stage proposes, per history:

* its own items (the repeat head and the recent items score only these);
* session-kNN's top items (it scores nothing else);
* the items nearest the transformer's query, from an approximate-nearest-neighbour
  index over the unit item table (faiss's inverted-file index);
* the most popular training items (sessions that hold them).

The transformer then scores only the candidates
(:meth:`~model.scorer.SequenceScorer.candidate_log_scores`: its softmax's
normaliser adds the other items' mass, estimated from a fixed uniform sample of
items), and kNN and the recent items keep their distributions over every item,
read at the candidates: every part's probabilities mean what they mean in full
ranking, so the mixing weights chosen for it still hold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import faiss
import numpy as np
import scipy.sparse as sp
import torch

from model.batches import HistoryBatch, pad_histories
from model.ranking.fusion import MemoryPart, recency_weights
from model.ranking.knn import packed_rows, row_positions
from model.ranking.parts import CandidateBudget, FusionWeights
from model.scorer import SequenceScorer

INF = float("-inf")


class NearestItems:
    """The items nearest unit queries by inner product, from an inverted-file index (faiss).

    The unit item table (row 0, padding, left out) is clustered by k-means into
    about sqrt(N) lists; a query scans the items of its ``probes`` nearest lists.
    On Diginetica (43k items, 208 lists) 8 probes find about 95 % of the exact top 100
    in 6 ms per 64 queries on one thread, where faiss's HNSW graph took 11 ms for
    97 % (and 4 s to build, against 0.7 s); ``bench/candidates.py`` shows what the
    miss costs (nothing measurable: kNN proposes most of what it misses).

    Examples:
        >>> table = torch.nn.functional.normalize(torch.randn(500, 8), dim=-1)
        >>> NearestItems(table).search(table[[7]], k=1).tolist()
        [[7]]
    """

    def __init__(self, table: torch.Tensor, *, probes: int = 8) -> None:
        vectors = np.ascontiguousarray(table[1:].float().cpu().numpy())
        n, dim = vectors.shape
        # faiss wants 39 training points a list; a small catalogue gets fewer lists.
        lists = max(1, min(round(math.sqrt(n)), n // 39))
        self._quantiser = faiss.IndexFlatIP(dim)
        self._index = faiss.IndexIVFFlat(self._quantiser, dim, lists, faiss.METRIC_INNER_PRODUCT)
        self._index.train(vectors)
        self._index.add(vectors)
        self._index.nprobe = min(probes, lists)

    def search(self, queries: torch.Tensor, *, k: int) -> torch.Tensor:
        """``(B, k)`` item indices nearest each ``(B, D)`` unit query; 0 where fewer exist."""
        faiss.omp_set_num_threads(torch.get_num_threads())  # the worker's scoring threads
        vectors = np.ascontiguousarray(queries.float().cpu().numpy())
        _, labels = self._index.search(vectors, k)
        return torch.from_numpy(labels + 1)  # faiss's -1 (none) becomes padding


@dataclass(frozen=True)
class Candidates:
    """Each history's candidates and their served probabilities.

    Attributes:
        items: ``(B, C)`` distinct item indices per row, 0 = none.
        scores: ``(B, C)`` float32 next-item probabilities, ``-inf`` where none.
    """

    items: torch.Tensor
    scores: torch.Tensor

    def dense(self, n_items: int) -> torch.Tensor:
        """``(B, N)`` scores with ``-inf`` for every item that is not a candidate."""
        out = torch.full((self.items.shape[0], n_items), INF)
        out.scatter_(1, self.items, self.scores)
        out[:, 0] = INF
        return out

    def top_k(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, k')`` best scores and their item indices, ``k' = min(k, C)``."""
        top = self.scores.topk(min(k, self.scores.shape[1]), dim=1)
        return top.values, self.items.gather(1, top.indices)


class CandidateRanker:
    """The served ranker over candidates only: what a worker runs on a CPU.

    Args:
        model: the checkpoint's transformer.
        weights: the mix of transformer, session-kNN and recent items.
        knn: the memory part: session-kNN or released transitions (None when its weight is 0).
        popular: item indices, most popular first.
        budget: how many candidates each source proposes.
        recent_decay: the recent items' weight ``decay ** distance``.
        bf16: the transformer's pass in bfloat16.
        tail_sample: items sampled (once, seeded) to estimate the softmax mass of
            the items that are not candidates.
    """

    def __init__(
        self,
        model: SequenceScorer,
        *,
        weights: FusionWeights,
        knn: MemoryPart | None,
        popular: torch.Tensor,
        budget: CandidateBudget,
        recent_decay: float = 0.5,
        bf16: bool = False,
        tail_sample: int = 1024,
    ) -> None:
        self._model = model.eval()
        self._device = next(model.parameters()).device
        self._dtype = torch.bfloat16 if bf16 else torch.float32
        with torch.inference_mode():
            table = model.item_table()
        self._items = table.to(self._dtype)
        self._nearest = NearestItems(table)
        self._weights = weights
        self._knn = knn if weights.neighbours > 0 else None
        self._popular = popular[: budget.popular].to(torch.int64)
        self._budget = budget
        self._decay = recent_decay
        self.n_items = model.config.n_items
        generator = torch.Generator().manual_seed(0)
        tail = torch.randint(1, self.n_items, (tail_sample,), generator=generator)
        self._tail = tail.to(self._device)

    def candidates(self, prefixes: list[list[int]], /) -> Candidates:
        """Each prefix's candidates and their fused probabilities."""
        batch = pad_histories(prefixes, max_len=self._model.config.max_len)
        knn = self._knn.item_scores(prefixes) if self._knn is not None else None
        with (
            torch.inference_mode(),
            torch.autocast(
                self._device.type, dtype=self._dtype, enabled=self._dtype != torch.float32
            ),
        ):
            on_device = batch.to(self._device)
            h = self._model.hidden(on_device)
            rows = torch.arange(h.shape[0], device=h.device)
            query = self._model.queries(h, on_device)[rows, on_device.lengths - 1].float()
            nearest = self._nearest.search(
                torch.nn.functional.normalize(query, dim=-1), k=self._budget.nearest
            )
            proposed = [batch.items, nearest, self._popular.expand(len(prefixes), -1)]
            if knn is not None:
                proposed.append(top_columns(knn, self._budget.neighbours))
            items = distinct(torch.cat(proposed, dim=1))
            log_scores = self._model.candidate_log_scores(
                h, on_device, query, items.to(self._device), self._items, self._tail
            )
        fused = self._weights.transformer * log_scores.float().cpu().exp()
        if knn is not None:
            fused += self._weights.neighbours * sparse_distribution_at(knn, items)
        if self._weights.recent > 0:
            fused += self._weights.recent * recent_distribution_at(batch, items, self._decay)
        return Candidates(items, torch.nan_to_num(fused).masked_fill(items == 0, INF))

    def score_many(self, prefixes: list[list[int]], /) -> torch.Tensor:
        """``(B, N)`` probabilities of the candidates, ``-inf`` elsewhere (for evaluation)."""
        return self.candidates(prefixes).dense(self.n_items)

    def top_k(self, prefixes: list[list[int]], /, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, k)`` best probabilities and their item indices."""
        return self.candidates(prefixes).top_k(k)


def distinct(items: torch.Tensor) -> torch.Tensor:
    """``(B, W)`` item indices -> each row's distinct non-zero ones, padded with 0 at the end.

    Examples:
        >>> distinct(torch.tensor([[3, 1, 3, 0], [2, 2, 2, 2]])).tolist()
        [[3, 1], [2, 0]]
    """
    ordered = items.sort(dim=1).values
    repeat = torch.zeros_like(ordered, dtype=torch.bool)
    repeat[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
    kept = ordered.masked_fill(repeat, 0)
    width = max(int((kept != 0).sum(dim=1).max()), 1)
    return kept.sort(dim=1, descending=True).values[:, :width]


def top_columns(matrix: sp.csr_matrix, k: int) -> torch.Tensor:
    """``(B, k)`` columns of each row's ``k`` largest stored values, padded with 0.

    Examples:
        >>> top_columns(sp.csr_matrix([[0, 5, 1, 3], [0, 0, 0, 0]]), 2).tolist()
        [[1, 3], [0, 0]]
    """
    values, columns = packed_rows(matrix, width=k)
    top = np.argsort(-values, axis=1, kind="stable")[:, :k]
    return torch.from_numpy(np.take_along_axis(columns, top, axis=1))


def sparse_distribution_at(matrix: sp.csr_matrix, items: torch.Tensor) -> torch.Tensor:
    """``(B, C)`` row-normalised values of a non-negative CSR matrix (sorted columns) at ``items``.

    Examples:
        >>> m = sp.csr_matrix(np.array([[0, 1, 0, 3]], dtype=np.float32))
        >>> sparse_distribution_at(m, torch.tensor([[3, 2, 1]])).tolist()
        [[0.75, 0.0, 0.25]]
    """
    n_rows, n_columns = matrix.shape
    rows, _ = row_positions(matrix)
    keys = rows * n_columns + matrix.indices
    wanted = (np.arange(n_rows)[:, None] * n_columns + items.numpy()).ravel()
    at = np.searchsorted(keys, wanted).clip(max=max(keys.size - 1, 0))
    found = keys[at] == wanted if keys.size else np.zeros(wanted.size, dtype=bool)
    values = np.where(found, matrix.data[at] if keys.size else 0.0, 0.0).reshape(items.shape)
    totals = np.asarray(matrix.sum(axis=1), dtype=np.float64)
    share = np.divide(values, totals, out=np.zeros(items.shape), where=totals > 0)
    return torch.from_numpy(share.astype(np.float32))


def recent_distribution_at(batch: HistoryBatch, items: torch.Tensor, decay: float) -> torch.Tensor:
    """``(B, C)`` the recent items' distribution (:class:`~model.ranking.fusion.RecentItems`).

    Examples:
        >>> batch = pad_histories([[1, 2, 1]], max_len=5)
        >>> recent_distribution_at(batch, torch.tensor([[1, 2, 3]]), 0.5)  # 1.25, 0.5 of 1.75
        tensor([[0.7143, 0.2857, 0.0000]])
    """
    weight = recency_weights(batch, decay)
    at = ((items[:, :, None] == batch.items[:, None, :]) * weight[:, None, :]).sum(-1)
    at = at.masked_fill(items == 0, 0.0)
    return at / weight.sum(dim=1, keepdim=True).clamp_min(1e-12)
