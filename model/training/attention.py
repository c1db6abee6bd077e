"""Self-attention with its weights in ``nn.Linear`` layers, for per-sample gradients.

Opacus computes per-sample gradients through hooks on supported layers
(``nn.Linear``, ``nn.Embedding``, ``nn.LayerNorm``, ...). ``nn.MultiheadAttention``
keeps q/k/v in a raw parameter and receives its masks as keyword arguments, which
those hooks never see; Opacus' ``DPMultiheadAttention`` (``ModuleValidator.fix``)
rejects ``is_causal=True``, which ``nn.TransformerEncoder`` sets for a causal mask,
and checks a 2-D mask against the batch size when ``batch_first``. DP training
(:mod:`model.training.private`) therefore swaps each block's attention for
:class:`PerSampleAttention` during its steps (:class:`AttentionSwap`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from model.scorer import SequenceScorer


class PerSampleAttention(nn.Module):
    """The self-attention of an ``nn.MultiheadAttention`` with its weights in ``nn.Linear``.

    Shares ``attention``'s parameters (no copy), so an optimizer built on the
    original model trains both; takes the calls ``nn.TransformerEncoderLayer`` makes.

    Examples:
        >>> attention = nn.MultiheadAttention(8, 2, batch_first=True).eval()
        >>> x = torch.randn(3, 5, 8)
        >>> same = PerSampleAttention(attention).eval()
        >>> expected = attention(x, x, x, need_weights=False)[0]
        >>> torch.allclose(same(x, x, x, need_weights=False)[0], expected, atol=1e-6)
        True
    """

    def __init__(self, attention: nn.MultiheadAttention) -> None:
        super().__init__()
        weight, bias = attention.in_proj_weight, attention.in_proj_bias
        if not attention.batch_first or weight is None or bias is None:
            raise ValueError("needs batch_first attention with packed q/k/v weights and biases")
        if attention.bias_k is not None or attention.add_zero_attn:
            raise ValueError("bias_k/bias_v and add_zero_attn are not supported")
        d = attention.embed_dim
        self.num_heads = attention.num_heads
        self.dropout = attention.dropout
        self.batch_first = True
        # Read by nn.TransformerEncoderLayer's fast-path test; False keeps it off.
        self._qkv_same_embed_dim = False
        self.in_proj_bias = None
        self.in_proj = nn.Linear(d, 3 * d, device="meta")
        self.in_proj.weight, self.in_proj.bias = weight, bias
        self.out_proj = nn.Linear(d, d, device="meta")
        self.out_proj.weight = attention.out_proj.weight
        self.out_proj.bias = attention.out_proj.bias

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        *,
        attn_mask: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[torch.Tensor, None]:
        """(B, T, D) -> (B, T, D) self-attention output and None (no weights).

        Masks follow ``nn.MultiheadAttention``: bool (True = masked) or additive float;
        ``attn_mask`` (T, T), ``key_padding_mask`` (B, T). ``is_causal`` only matters
        without ``attn_mask``, as there.
        """
        if key is not query or value is not query:
            raise ValueError("PerSampleAttention computes self-attention only")
        b, t, d = query.shape
        qkv = self.in_proj(query).view(b, t, 3, self.num_heads, d // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, H, T, D / H)
        if attn_mask is None and is_causal:
            attn_mask = torch.ones(t, t, dtype=torch.bool, device=query.device).triu(1)
        mask = _additive_mask(attn_mask, key_padding_mask, query.dtype)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.out_proj(out.transpose(1, 2).reshape(b, t, d)), None


def _additive_mask(
    attn_mask: torch.Tensor | None, key_padding_mask: torch.Tensor | None, dtype: torch.dtype
) -> torch.Tensor | None:
    """(B, 1, T, T) additive mask from a (T, T) and a (B, T) mask, or None."""

    def additive(mask: torch.Tensor) -> torch.Tensor:
        if mask.dtype != torch.bool:
            return mask.to(dtype)
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(
            mask, float("-inf")
        )

    merged = None if attn_mask is None else additive(attn_mask)[None, None]
    if key_padding_mask is not None:
        padding = additive(key_padding_mask)[:, None, None, :]
        merged = padding if merged is None else merged + padding
    return merged


class AttentionSwap:
    """Swaps every block's attention between the original and :class:`PerSampleAttention`.

    Both share the same parameters, so swapping costs nothing and loses nothing.
    """

    def __init__(self, model: SequenceScorer) -> None:
        self._layers = list(model.blocks.layers)
        self._plain = [cast(nn.MultiheadAttention, layer.self_attn) for layer in self._layers]
        self._per_sample = [PerSampleAttention(attention) for attention in self._plain]

    @contextmanager
    def per_sample(self) -> Iterator[None]:
        """Inside: per-sample-gradient attention. On exit: the original modules."""
        for layer, attention in zip(self._layers, self._per_sample, strict=True):
            layer.self_attn = attention
        try:
            yield
        finally:
            for layer, original in zip(self._layers, self._plain, strict=True):
                layer.self_attn = original
