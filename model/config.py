"""Hyperparameters of the sequence scorer: one frozen dataclass, never changed once built."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class ScorerConfig:
    """Shape and regularisation of :class:`model.scorer.SequenceScorer`.

    Attributes:
        n_items: vocabulary size including the padding index 0.
        d_model: width D of embeddings and hidden states.
        n_layers: transformer blocks.
        n_heads: attention heads per block.
        max_len: longest history T read; older events are dropped.
        dropout: dropout inside the blocks.
        embedding_dropout: dropout on the summed input embeddings.
        n_event_types: event-type vocabulary (0 = padding/unknown).
        n_gap_buckets: log-spaced buckets of the time gap to the previous event.
        logit_scale: items are scored by scale * cosine(h, item embedding)
            (normalised scores, as in NISER, curb the popularity bias).
        repeat: a repeat (copy) head: a learned gate mixes the next-item softmax with
            attention over the history's own items (a fifth of next items are repeats).
        item_readout: score items against a learned weighted mean of the history's own
            item embeddings instead of the last hidden state (CORE, Hou et al. 2022):
            the session and the catalogue then live in one space.
    """

    n_items: int
    d_model: int = 192
    n_layers: int = 2
    n_heads: int = 2
    max_len: int = 50
    dropout: float = 0.1
    embedding_dropout: float = 0.2
    n_event_types: int = 6
    n_gap_buckets: int = 16
    logit_scale: float = 14.0
    repeat: bool = True
    item_readout: bool = True

    def __post_init__(self) -> None:
        if self.n_items < 2:
            raise ValueError("n_items must include padding and at least one item")
        if self.d_model % self.n_heads:
            raise ValueError("d_model must be divisible by n_heads")
        for name in ("dropout", "embedding_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1)")
        if self.logit_scale <= 0:
            raise ValueError("logit_scale must be > 0")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ScorerConfig:
        """The config a checkpoint recorded (older ones lack the later heads: off)."""
        return cls(**{"repeat": False, "item_readout": False, **values})

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for checkpoints."""
        return asdict(self)
