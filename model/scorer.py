"""The sequence scorer: a causal transformer over a user's recent events.

Two heads read the hidden state after each event: next-item scores over the
whole catalogue (cosine against the tied item embeddings, scaled), and the
probability that the session will contain a purchase.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.batches import HistoryBatch, pad_histories
from model.config import ScorerConfig
from model.layers import EventEmbedding, causal_mask


class SequenceScorer(nn.Module):
    """Causal transformer with a next-item head and a purchase-intent head.

    Examples:
        >>> from model.batches import pad_histories
        >>> scorer = SequenceScorer(ScorerConfig(n_items=20, d_model=16, n_heads=2)).eval()
        >>> scores, intent = scorer.score_many(pad_histories([[3, 4], [5]], max_len=8))
        >>> scores.shape, intent.shape
        (torch.Size([2, 20]), torch.Size([2]))
        >>> bool(torch.isinf(scores[:, 0]).all())  # padding is never recommended
        True
    """

    def __init__(self, config: ScorerConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = EventEmbedding(config)
        block = nn.TransformerEncoderLayer(
            d_model=config.d_model,
            nhead=config.n_heads,
            dim_feedforward=4 * config.d_model,
            dropout=config.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.blocks = nn.TransformerEncoder(
            block, num_layers=config.n_layers, enable_nested_tensor=False
        )
        self.final_norm = nn.LayerNorm(config.d_model)
        self.intent_head = nn.Sequential(
            nn.Linear(config.d_model, config.d_model), nn.GELU(), nn.Linear(config.d_model, 1)
        )

    def hidden(self, batch: HistoryBatch) -> torch.Tensor:
        """(B, T) histories -> (B, T, D) hidden states; position t sees events <= t."""
        x = self.embed(batch)
        t = x.shape[1]
        padding = batch.items == 0
        h = self.blocks(x, mask=causal_mask(t, x.device), src_key_padding_mask=padding)
        out: torch.Tensor = self.final_norm(h)
        return out

    def item_table(self) -> torch.Tensor:
        """(N, D) unit-norm item embeddings; cache it for repeated scoring under inference."""
        return F.normalize(self.embed.items.weight, dim=-1)

    def item_logits(self, h: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """(..., D) hidden states -> (..., N) next-item logits; padding gets -inf.

        ``items`` is a cached :meth:`item_table` (skips renormalising 43k rows per call).
        """
        table = self.item_table() if items is None else items
        logits = self.config.logit_scale * (F.normalize(h, dim=-1).to(table.dtype) @ table.T)
        logits[..., 0] = float("-inf")
        return logits

    def forward(self, batch: HistoryBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Training pass: hidden states (B, T, D) and intent logits (B, T)."""
        h = self.hidden(batch)
        return h, self.intent_head(h).squeeze(-1)

    def score_many(
        self, batch: HistoryBatch, *, items: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Score B users from their histories, in one call.

        Args:
            batch: the users' histories.
            items: a cached :meth:`item_table` (any dtype), else computed here.

        Returns:
            (B, N) next-item logits (``logit_scale`` x cosine) and (B,) purchase
            probabilities, both read at each history's last event.
        """
        h = self.hidden(batch)
        last = h[torch.arange(h.shape[0], device=h.device), batch.lengths - 1]
        intent = torch.sigmoid(self.intent_head(last).squeeze(-1))
        return self.item_logits(last, items), intent


class PrefixRanker:
    """Adapts a :class:`SequenceScorer` to the evaluation protocol's ``score_many``.

    Evaluation prefixes carry items only (no event types or times).
    """

    def __init__(self, model: SequenceScorer) -> None:
        self._model = model.eval()
        self._device = next(model.parameters()).device

    def score_many(self, prefixes: list[list[int]], /) -> torch.Tensor:
        """(B, N) float32 next-item scores of B item-index prefixes."""
        batch = pad_histories(prefixes, max_len=self._model.config.max_len).to(self._device)
        with torch.inference_mode():
            scores, _ = self._model.score_many(batch)
        return scores.float().cpu()
