"""Padded tensors of item histories: the one input format of the scorer.

Histories are right-padded with 0 to the longest in the batch (at most
``max_len`` most recent events), so position t of every row is the t-th event.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class HistoryBatch:
    """A batch of B histories of up to T events.

    Attributes:
        items: (B, T) int64 item indices, 0 = padding.
        types: (B, T) int64 event-type indices, 0 = padding/unknown.
        gaps: (B, T) int64 time-gap bucket indices, 0 = unknown/first.
        lengths: (B,) int64 number of real events per row (>= 1).
    """

    items: torch.Tensor
    types: torch.Tensor
    gaps: torch.Tensor
    lengths: torch.Tensor

    def to(self, device: torch.device) -> HistoryBatch:
        """The same batch on ``device``."""
        return HistoryBatch(
            items=self.items.to(device),
            types=self.types.to(device),
            gaps=self.gaps.to(device),
            lengths=self.lengths.to(device),
        )


def gap_bucket(seconds: float, n_buckets: int) -> int:
    """Bucket of a time gap: 1 + floor(log2(1 + seconds)), capped; 0 = unknown.

    Examples:
        >>> [gap_bucket(s, 16) for s in (0.0, 1.0, 10.0, 1e9)]
        [1, 2, 4, 15]
    """
    if not math.isfinite(seconds) or seconds < 0:
        return 0
    return min(1 + int(math.log2(1.0 + seconds)), n_buckets - 1)


def pad_histories(
    items: Sequence[Sequence[int]],
    *,
    max_len: int,
    types: Sequence[Sequence[int]] | None = None,
    gaps: Sequence[Sequence[int]] | None = None,
) -> HistoryBatch:
    """Right-pad the last ``max_len`` events of each history into one batch.

    Examples:
        >>> batch = pad_histories([[5, 6, 7], [9]], max_len=2)
        >>> batch.items.tolist(), batch.lengths.tolist()
        ([[6, 7], [9, 0]], [2, 1])
    """
    if not items or any(len(history) == 0 for history in items):
        raise ValueError("every history needs at least one event")
    lengths = [min(len(history), max_len) for history in items]
    width = max(lengths)
    shape = (len(items), width)
    out = [torch.zeros(shape, dtype=torch.int64) for _ in range(3)]
    for column, source in zip(out, (items, types, gaps), strict=True):
        if source is None:
            continue
        rows = [list(row[-n:]) + [0] * (width - n) for row, n in zip(source, lengths, strict=True)]
        column.copy_(torch.tensor(rows, dtype=torch.int64))
    return HistoryBatch(
        items=out[0], types=out[1], gaps=out[2], lengths=torch.tensor(lengths, dtype=torch.int64)
    )
