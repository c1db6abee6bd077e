"""The sequence scorer: a causal transformer over a user's recent events.

Heads read the hidden state after each event: next-item scores over the whole
catalogue (cosine against the tied item embeddings, scaled), optionally mixed by a
learned gate with a repeat head that points at the history's own items (as in
RepeatNet, Ren et al. 2019), and the probability that the session will contain a
purchase.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.batches import HistoryBatch, pad_histories
from model.config import ScorerConfig
from model.layers import EventEmbedding, causal_mask


class RepeatHead(nn.Module):
    """Attention of a query state over the history's states, and the gate to use it.

    A fifth of next items in e-commerce sessions are items the shopper already saw;
    pointing at them beats recalling them from a 43k-row table.
    """

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.query = nn.Linear(d_model, d_model)
        self.gate = nn.Linear(d_model, 1)

    def forward(
        self, queries: torch.Tensor, keys: torch.Tensor, allowed: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pointer ``(B, Q, T)`` over positions, ``log g`` and ``log (1 - g)`` ``(B, Q)``.

        Args:
            queries: states that predict a next item, ``(B, Q, D)``.
            keys: the history's states, ``(B, T, D)``.
            allowed: ``(B, Q, T)``, True where a query may point at a position.
        """
        scale = queries.shape[-1] ** -0.5
        attention = (self.query(queries) @ keys.transpose(1, 2)) * scale
        pointer = torch.softmax(attention.float().masked_fill(~allowed, float("-inf")), dim=-1)
        gate = self.gate(queries).squeeze(-1).float()
        return torch.nan_to_num(pointer), F.logsigmoid(gate), F.logsigmoid(-gate)


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
        self.repeat_head = RepeatHead(config.d_model) if config.repeat else None

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

    def next_log_scores(
        self, h: torch.Tensor, batch: HistoryBatch, items: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, T, D) hidden states of ``batch`` -> (B, N) float32 log-scores after each history.

        Without a repeat head these are the logits; with one, the log of the gated
        mixture. Either way their softmax is the model's next-item distribution.
        """
        rows = torch.arange(h.shape[0], device=h.device)
        last = h[rows, batch.lengths - 1]
        logits = self.item_logits(last, items).float()
        if self.repeat_head is None:
            return logits
        allowed = (batch.items != 0)[:, None]
        pointer, log_gate, log_keep = self.repeat_head(last[:, None], h, allowed)
        # The pointer's mass lands on the history's own items only: add it there.
        mixture = torch.softmax(logits, dim=-1) * log_keep.exp()
        mixture.scatter_add_(1, batch.items, pointer[:, 0] * log_gate.exp())
        mixed: torch.Tensor = mixture.log()
        mixed[:, 0] = float("-inf")
        return mixed

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
            (B, N) next-item log-scores (:meth:`next_log_scores`) and (B,) purchase
            probabilities, both read at each history's last event.
        """
        h = self.hidden(batch)
        last = h[torch.arange(h.shape[0], device=h.device), batch.lengths - 1]
        intent = torch.sigmoid(self.intent_head(last).squeeze(-1))
        return self.next_log_scores(h, batch, items), intent


class PrefixRanker:
    """Adapts a frozen :class:`SequenceScorer` to the ranking protocol's ``score_many``.

    Prefixes carry items only (no event types or times). The unit item table is
    computed once; ``bf16`` runs the pass in bfloat16 (about 3x faster on a CPU,
    near ties may swap order).
    """

    def __init__(self, model: SequenceScorer, *, bf16: bool = False) -> None:
        self._model = model.eval()
        self._device = next(model.parameters()).device
        self._dtype = torch.bfloat16 if bf16 else torch.float32
        with torch.inference_mode():
            self._items = model.item_table().to(self._dtype)

    def score_many(self, prefixes: list[list[int]], /) -> torch.Tensor:
        """(B, N) float32 next-item log-scores of B item-index prefixes."""
        batch = pad_histories(prefixes, max_len=self._model.config.max_len).to(self._device)
        bf16 = self._dtype != torch.float32
        with (
            torch.inference_mode(),
            torch.autocast(self._device.type, dtype=self._dtype, enabled=bf16),
        ):
            scores, _ = self._model.score_many(batch, items=self._items)
        return scores.float().cpu()
