"""Building blocks of the sequence scorer."""

from __future__ import annotations

import torch
from torch import nn

from model.batches import HistoryBatch
from model.config import ScorerConfig


class EventEmbedding(nn.Module):
    """Item + event type + time gap + position embeddings of a history.

    Examples:
        >>> from model.batches import pad_histories
        >>> layer = EventEmbedding(ScorerConfig(n_items=10, d_model=8, n_heads=2))
        >>> layer(pad_histories([[1, 2, 3]], max_len=5)).shape
        torch.Size([1, 3, 8])
    """

    def __init__(self, config: ScorerConfig) -> None:
        super().__init__()
        d = config.d_model
        self.items = nn.Embedding(config.n_items, d, padding_idx=0)
        self.types = nn.Embedding(config.n_event_types, d, padding_idx=0)
        self.gaps = nn.Embedding(config.n_gap_buckets, d, padding_idx=0)
        self.positions = nn.Embedding(config.max_len, d)
        self.norm = nn.LayerNorm(d)
        self.dropout = nn.Dropout(config.embedding_dropout)
        # One scale for every table: PyTorch's default N(0, 1) for positions would
        # drown the items after the LayerNorm, and training then barely starts.
        for table in (self.items, self.types, self.gaps, self.positions):
            nn.init.normal_(table.weight, std=d**-0.5)
        with torch.no_grad():
            for table in (self.items, self.types, self.gaps):
                table.weight[0].zero_()

    def forward(self, batch: HistoryBatch) -> torch.Tensor:
        """(B, T) histories -> (B, T, D) float32 inputs of the first block."""
        b, t = batch.items.shape
        # A (B, T) index, not (T,): per-sample gradient hooks (Opacus, model/training/private.py)
        # read the batch size from every layer's input.
        positions = torch.arange(t, device=batch.items.device).expand(b, t)
        summed = (
            self.items(batch.items)
            + self.types(batch.types)
            + self.gaps(batch.gaps)
            + self.positions(positions)
        )
        out: torch.Tensor = self.dropout(self.norm(summed))
        return out


def causal_mask(t: int, device: torch.device) -> torch.Tensor:
    """(T, T) bool mask, True where position i must not attend to j > i."""
    return torch.triu(torch.ones(t, t, dtype=torch.bool, device=device), diagonal=1)
