"""Ranking metrics over all items (the SR-GNN protocol), vectorised over a batch.

Each case is a row of scores over every item index and one target index. The
target's rank is computed from the scores alone, without sorting:

* ``"pessimistic"`` (default): ``rank = count(score >= target score)``, i.e. the
  target is placed *after* every other item with the same score.
* ``"optimistic"``: ``rank = 1 + count(score > target score)``, i.e. the target
  is placed *before* every item it ties with.

Optimistic ranking rewards ties: a scorer that gives every item the same score
would have HR@20 = 100 %, and a session-kNN that scores only a handful of items
gets every unscored target ranked just behind them. Pessimistic ranking never
credits a tie, so it is the default. For continuous model scores ties are
vanishingly rare and both conventions agree.

A target of index 0 (padding, i.e. an item unknown to the vocabulary) or with a
NaN score gets rank :data:`MISS_RANK`: such a case still counts, as a miss at
every K.

Examples:
    >>> import torch
    >>> scores = torch.tensor([[0.1, 0.9, 0.5, 0.5], [0.0, 0.0, 0.0, 1.0]])
    >>> targets = torch.tensor([2, 3])
    >>> target_ranks(scores, targets).tolist()
    [3, 1]
    >>> target_ranks(scores, targets, ties="optimistic").tolist()
    [2, 1]
    >>> metrics = RankingMetrics()
    >>> metrics.update(scores, targets)
    >>> {name: round(value, 2) for name, value in metrics.result().items()}
    {'P@20': 100.0, 'MRR@20': 66.67, 'HR@10': 100.0, 'NDCG@10': 75.0}
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch

from model.threshold import release_sums

#: How a target that ties with other items is ranked (see the module docstring).
Ties = Literal["pessimistic", "optimistic"]

#: Rank of a target that cannot be ranked (padding or NaN score): beyond every K.
MISS_RANK = torch.iinfo(torch.int64).max

#: Names of the reported metrics, in the order of :meth:`RankingMetrics.result`.
METRIC_NAMES: tuple[str, ...] = ("P@20", "MRR@20", "HR@10", "NDCG@10")


def selection_score(metrics: dict[str, float]) -> float:
    """P@20 + MRR@20: what validation picks epochs and mixes by, both figures counting.

    Picking by P@20 first lets differences of a few validation cases in P@20 (its
    standard error on 20,000 cases is about 0.35 points) outweigh a point of MRR@20.

    Examples:
        >>> selection_score({"P@20": 52.47, "MRR@20": 18.61}) > selection_score(
        ...     {"P@20": 52.50, "MRR@20": 17.92})
        True
    """
    return metrics.get("P@20", -math.inf) + metrics.get("MRR@20", -math.inf)


def target_ranks(
    scores: torch.Tensor, targets: torch.Tensor, *, ties: Ties = "pessimistic"
) -> torch.Tensor:
    """1-based rank of each target among all items.

    Args:
        scores: ``(B, N)`` float scores; higher is better.
        targets: ``(B,)`` int64 item indices in ``[0, N)``; 0 is padding.
        ties: How items scored equal to the target count (module docstring).

    Returns:
        ``(B,)`` int64 ranks in ``[1, N]``; :data:`MISS_RANK` where the target
        is 0 or its score is NaN.

    Raises:
        ValueError: If the shapes do not match.

    Examples:
        >>> s = torch.tensor([[0.0, 3.0, 2.0, 2.0]]).expand(3, -1)
        >>> target_ranks(s, torch.tensor([1, 3, 0])).tolist() == [1, 3, MISS_RANK]  # 0: padding
        True
    """
    if scores.dim() != 2 or targets.shape != (scores.shape[0],):
        shapes = f"{tuple(scores.shape)} and {tuple(targets.shape)}"
        raise ValueError(f"expected scores (B, N) and targets (B,), got {shapes}")
    target_scores = scores.gather(1, targets.unsqueeze(1))
    if ties == "pessimistic":
        ranks = (scores >= target_scores).sum(dim=1)
    else:
        ranks = (scores > target_scores).sum(dim=1) + 1
    # NaN compares false with everything, which would rank it first (or 0th).
    invalid = target_scores.squeeze(1).isnan() | (targets == 0)
    return torch.where(invalid, torch.full_like(ranks, MISS_RANK), ranks)


def list_ranks(lists: Sequence[Sequence[str]], targets: Sequence[str]) -> torch.Tensor:
    """``(B,)`` 1-based rank of each target in its served list; :data:`MISS_RANK` if absent.

    What a shop sees is a list, not scores: a target outside it is a miss at every K
    the list is not longer than.

    Examples:
        >>> list_ranks([["a", "b"], ["a"]], ["b", "c"]).tolist() == [2, MISS_RANK]
        True
    """
    ranks = [
        items.index(target) + 1 if target in items else MISS_RANK
        for items, target in zip(lists, targets, strict=True)
    ]
    return torch.tensor(ranks, dtype=torch.int64)


def hit_at(ranks: torch.Tensor, k: int) -> torch.Tensor:
    """``(B,)`` float64: 1 where ``rank <= k``, else 0.

    Examples:
        >>> hit_at(torch.tensor([1, 20, 21]), 20).tolist()
        [1.0, 1.0, 0.0]
    """
    return (ranks <= k).double()


def reciprocal_rank_at(ranks: torch.Tensor, k: int) -> torch.Tensor:
    """``(B,)`` float64: ``1 / rank`` where ``rank <= k``, else 0.

    Examples:
        >>> reciprocal_rank_at(torch.tensor([1, 4, 21]), 20).tolist()
        [1.0, 0.25, 0.0]
    """
    return torch.where(ranks <= k, 1.0 / ranks.double(), 0.0)


def ndcg_at(ranks: torch.Tensor, k: int) -> torch.Tensor:
    """``(B,)`` float64: ``1 / log2(rank + 1)`` where ``rank <= k``, else 0 (one relevant item).

    Examples:
        >>> ndcg_at(torch.tensor([1, 3, 11]), 10).tolist()
        [1.0, 0.5, 0.0]
    """
    return torch.where(ranks <= k, 1.0 / torch.log2(ranks.double() + 1.0), 0.0)


class RankingMetrics:
    """Sums of per-case metrics over batches; :meth:`result` reports means in percent.

    Reported: ``P@20`` (= HR@20, the SR-GNN papers' "precision"), ``MRR@20``,
    ``HR@10`` and ``NDCG@10``. The sums stay on the scores' device until
    :meth:`result`, so :meth:`update` never synchronises.

    Args:
        ties: Tie convention for :func:`target_ranks`.

    Examples:
        >>> metrics = RankingMetrics()
        >>> metrics.update(torch.tensor([[0.0, 2.0, 1.0]]), torch.tensor([2]))
        >>> metrics.count, metrics.result()["MRR@20"]
        (1, 50.0)
    """

    def __init__(self, *, ties: Ties = "pessimistic") -> None:
        self.ties: Ties = ties
        self.count = 0
        self._sums: torch.Tensor | None = None

    def update(self, scores: torch.Tensor, targets: torch.Tensor) -> None:
        """Add a batch: ``scores`` ``(B, N)`` float, ``targets`` ``(B,)`` int64."""
        self.update_ranks(target_ranks(scores, targets, ties=self.ties))

    def update_ranks(self, ranks: torch.Tensor) -> None:
        """Add a batch of 1-based target ranks ``(B,)`` (e.g. :func:`list_ranks`)."""
        per_case = torch.stack(
            [
                hit_at(ranks, 20),
                reciprocal_rank_at(ranks, 20),
                hit_at(ranks, 10),
                ndcg_at(ranks, 10),
            ]
        )
        sums = per_case.sum(dim=1)
        self._sums = sums if self._sums is None else self._sums + sums
        self.count += int(ranks.shape[0])

    def result(self) -> dict[str, float]:
        """Mean of each metric in percent, keyed by :data:`METRIC_NAMES`.

        Raises:
            ValueError: If no case was added.
        """
        if self._sums is None or self.count == 0:
            raise ValueError("no cases were added")
        means = (self._sums * (100.0 / self.count)).tolist()
        return dict(zip(METRIC_NAMES, means, strict=True))

    def private_result(self, *, epsilon: float) -> dict[str, float]:
        """:meth:`result` from sums and a count released with epsilon-DP (OpenDP's Laplace).

        Each contributor must have added at most one case: it then moves the count by
        1 and each sum by at most 1.

        Raises:
            ValueError: If no case was added.
        """
        if self._sums is None or self.count == 0:
            raise ValueError("no cases were added")
        values = [float(self.count), *self._sums.tolist()]
        count, *sums = release_sums(values, l1=len(values), epsilon=epsilon)
        return {
            name: 100.0 * v / max(count, 1.0) for name, v in zip(METRIC_NAMES, sums, strict=True)
        }
