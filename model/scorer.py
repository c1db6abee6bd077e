"""The sequence scorer: a causal transformer over a user's recent events.

After each event the model scores the whole catalogue: the cosine, scaled, of a
query (a learned mix of the history's own item embeddings, or the hidden state)
against the tied item embeddings, mixed by a learned gate with a repeat head that
points at the history's own items (as in RepeatNet, Ren et al. 2019). Purchase
intent is not the transformer's job: jointly trained, its head did no better than
the same head on the stream's counters alone (docs/quality.md), and the worker
serves the online model (``online_learning/intent.py``).
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


class ItemReadout(nn.Module):
    """Each prefix's query: a learned weighted mean of its own items' embeddings.

    The last hidden state lives in a space of its own, and the cosine against the
    item table has to bridge the two; a mix of the history's item embeddings is in
    the table's space already (CORE's representation-consistent encoder). The price:
    the history's own items always rank near the top (a history of one item queries
    with exactly that item), so a strict k -> k + 1 chain is beyond it; adding a
    learned map of the state to the mix, tried to lift that, lost 7.5 validation
    P@20 points on Diginetica after an epoch.
    """

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.weight = nn.Linear(d_model, 1)

    def forward(self, h: torch.Tensor, embedded: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """(B, T, D) states and item embeddings, (B, T) real events -> (B, T, D) queries.

        Query t mixes the items of events <= t, weighted by a softmax over their states.
        """
        t = h.shape[1]
        seen = torch.ones(t, t, dtype=torch.bool, device=h.device).tril()
        allowed = seen[None] & valid[:, None, :]
        weights = self.weight(h).squeeze(-1).float()[:, None, :].expand(-1, t, -1)
        alpha = torch.nan_to_num(torch.softmax(weights.masked_fill(~allowed, float("-inf")), -1))
        mixed: torch.Tensor = alpha.to(embedded.dtype) @ embedded
        return mixed


class SequenceScorer(nn.Module):
    """Causal transformer that scores every item as a shopper's next one.

    Examples:
        >>> from model.batches import pad_histories
        >>> scorer = SequenceScorer(ScorerConfig(n_items=20, d_model=16, n_heads=2)).eval()
        >>> scores = scorer.score_many(pad_histories([[3, 4], [5]], max_len=8))
        >>> scores.shape
        torch.Size([2, 20])
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
        self.repeat_head = RepeatHead(config.d_model) if config.repeat else None
        self.item_readout = ItemReadout(config.d_model) if config.item_readout else None
        self.register_load_state_dict_pre_hook(_drop_retired_weights)  # type: ignore[no-untyped-call]

    def hidden(self, batch: HistoryBatch) -> torch.Tensor:
        """(B, T) histories -> (B, T, D) hidden states; position t sees events <= t."""
        x = self.embed(batch)
        t = x.shape[1]
        padding = batch.items == 0
        h = self.blocks(x, mask=causal_mask(t, x.device), src_key_padding_mask=padding)
        out: torch.Tensor = self.final_norm(h)
        return out

    def queries(self, h: torch.Tensor, batch: HistoryBatch) -> torch.Tensor:
        """(B, T, D) states -> the (B, T, D) vectors that score the catalogue after each event."""
        if self.item_readout is None:
            return h
        embedded = F.dropout(
            self.embed.items(batch.items), self.config.embedding_dropout, self.training
        )
        out: torch.Tensor = self.item_readout(h, embedded, batch.items != 0)
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
        mixture of the explore softmax (over items the history does not hold) and the
        pointer (over those it does). Either way their softmax is the model's
        next-item distribution.
        """
        rows = torch.arange(h.shape[0], device=h.device)
        last = h[rows, batch.lengths - 1]
        logits = self.item_logits(self.queries(h, batch)[rows, batch.lengths - 1], items).float()
        if self.repeat_head is None:
            return logits
        allowed = (batch.items != 0)[:, None]
        pointer, log_gate, log_keep = self.repeat_head(last[:, None], h, allowed)
        # Explore over the items the history does not hold; the pointer takes those.
        # nan_to_num: a history that holds every item leaves nothing to explore.
        explore = torch.nan_to_num(torch.softmax(logits.scatter(1, batch.items, float("-inf")), -1))
        mixture = explore * log_keep.exp()
        mixture.scatter_add_(1, batch.items, pointer[:, 0] * log_gate.exp())
        mixed: torch.Tensor = mixture.log()
        mixed[:, 0] = float("-inf")
        return mixed

    def candidate_log_scores(
        self,
        h: torch.Tensor,
        batch: HistoryBatch,
        query: torch.Tensor,
        candidates: torch.Tensor,
        items: torch.Tensor,
        tail: torch.Tensor,
    ) -> torch.Tensor:
        """:meth:`next_log_scores` at each history's own candidates only: ``(B, C)`` float32.

        Log-probabilities of the model's next-item distribution over every item,
        read at the candidates, at the cost of ``C + S`` dot products a history
        instead of ``N``: the explore softmax's normaliser is the candidates' exact
        mass plus the other items' mass estimated from ``tail``, a fixed uniform
        sample of ``S`` items (the mean ``exp(logit)`` of its items that are not
        candidates, times the number of items that are not). The pointer covers the
        history's items, which must be among the candidates.

        Args:
            h: ``(B, T, D)`` hidden states of ``batch``.
            query: ``(B, D)`` each history's last query (:meth:`queries`).
            candidates: ``(B, C)`` distinct item indices per row; 0 = no candidate.
            items: a cached :meth:`item_table` (any dtype).
            tail: ``(S,)`` item indices >= 1, drawn uniformly once.
        """
        unit = F.normalize(query, dim=-1).to(items.dtype)
        scale, inf = self.config.logit_scale, float("-inf")
        logits = (
            scale * torch.bmm(F.embedding(candidates, items), unit[:, :, None]).squeeze(-1).float()
        )
        seen = candidates[:, :, None] == batch.items[:, None, :]  # (B, C, T)
        none = candidates == 0
        held = seen.any(-1) if self.repeat_head is not None else torch.zeros_like(none)
        explore = logits.masked_fill(none | held, inf)
        # The sample's items that are not candidates stand for every item that is not.
        is_candidate = torch.zeros(
            candidates.shape[0], self.config.n_items, dtype=torch.bool, device=candidates.device
        ).scatter_(1, candidates, True)
        sampled_in = is_candidate[:, tail]  # (B, S)
        sampled = (scale * (unit @ F.embedding(tail, items).T).float()).masked_fill(sampled_in, inf)
        outside = (self.config.n_items - 1) - (~none).sum(dim=1)
        tail_mass = (
            torch.logsumexp(sampled, dim=1)
            - (~sampled_in).sum(dim=1).clamp_min(1).float().log()
            + outside.float().log()
        )
        normaliser = torch.logsumexp(torch.cat([explore, tail_mass[:, None]], dim=1), dim=1)
        # nan_to_num: nothing left to explore (-inf - -inf) has no explore mass.
        log_explore = torch.nan_to_num(explore - normaliser[:, None], nan=inf)
        if self.repeat_head is None:
            return log_explore
        rows = torch.arange(h.shape[0], device=h.device)
        last = h[rows, batch.lengths - 1]
        pointer, log_gate, log_keep = self.repeat_head(
            last[:, None], h, (batch.items != 0)[:, None]
        )
        mixture = log_explore.exp() * log_keep.exp()
        mixture += (seen.float() @ pointer[:, 0, :, None]).squeeze(-1) * log_gate.exp()
        mixed: torch.Tensor = mixture.log().masked_fill(none, inf)
        return mixed

    def forward(self, batch: HistoryBatch) -> torch.Tensor:
        """Training pass: the (B, T, D) hidden states (:meth:`hidden`)."""
        return self.hidden(batch)

    def score_many(self, batch: HistoryBatch, *, items: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N) next-item log-scores (:meth:`next_log_scores`) of B users, in one call.

        ``items`` is a cached :meth:`item_table` (any dtype), else computed here.
        """
        return self.next_log_scores(self.hidden(batch), batch, items)


def _drop_retired_weights(
    module: nn.Module, state_dict: dict[str, torch.Tensor], prefix: str, *_: object
) -> None:
    """Older checkpoints carry an intent head (never trained, now gone): skip its weights."""
    for key in [k for k in state_dict if k.startswith(f"{prefix}intent_head.")]:
        del state_dict[key]


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
            scores = self._model.score_many(batch, items=self._items)
        return scores.float().cpu()
