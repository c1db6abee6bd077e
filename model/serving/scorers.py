"""The scorers the worker serves: a trained checkpoint's served ranker, behind one protocol.

:class:`CheckpointScorer` serves a trained :class:`~model.scorer.SequenceScorer`
through its batched ``score_many``, under inference mode, in bounded chunks, with
the normalised item table computed once; :class:`ItemScorer` is what
:class:`~model.serving.ranker.ContextRanker` asks of it and of the stream baseline.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import torch

from model.calibration import ClickCalibrator
from model.checkpoint import Checkpoint
from model.ranking.parts import FusionWeights, RankerParts
from model.ranking.ranker import served_ranker

ScoredItems = list[tuple[str, float]]

#: Least weight of the user's recent items outside the model's vocabulary. The mix is
#: chosen on validation, where every target is in the vocabulary, so it cannot say
#: what new items deserve; 0.2 is about the recent-items weight chosen on Diginetica.
#: On the demo log's second half, with a model trained on its first, the lists the
#: model made hit 50.0 % (HR@10) with 0.2 and 50.1 % with 0.46, 40.3 % without
#: (``bench/new_items.py``).
NEW_ITEMS_WEIGHT = 0.2


class ItemScorer(Protocol):
    """Scores the next items of a batch of users from their recent item ids."""

    @property
    def version(self) -> str:
        """Model version named in every recommendation it produced."""
        ...

    @property
    def epsilon(self) -> float:
        """Per-session ε of the DP guarantee on what it learned from.

        ``inf`` when there is none (a model trained without DP); NaN when there is
        no per-session figure (the stream baseline learns only from DP releases,
        whose ε is per user and window).
        """
        ...

    @property
    def calibrator(self) -> ClickCalibrator | None:
        """P(click) and P(purchase) by rank in its lists; None: no sponsored slot in them."""
        ...

    def score_many(self, histories: Sequence[Sequence[str]], /, *, k: int) -> list[ScoredItems]:
        """Top-``k`` (item, score) per history, best first; ``[]`` when it cannot score one."""
        ...

    def knows(self, item_id: str) -> bool:
        """Whether the scorer has behaviour evidence for ``item_id``."""
        ...


class CheckpointScorer:
    """An :class:`ItemScorer` over a trained checkpoint's served ranker.

    The ranker is :func:`model.ranking.ranker.served_ranker`, exactly what
    ``intentstream evaluate`` scores: the transformer mixed with session-kNN and the
    user's recent items as the checkpoint says, over a few hundred candidates a
    history unless ``full_ranking``. Scores are next-item probabilities.
    Histories pass as item ids only, as in training; ids outside the checkpoint's
    vocabulary are skipped, and a history with no known item is left to the
    fallback. The user's own recent items outside the vocabulary (new since the
    model was trained) still get the recent-items share of the mix that a known
    item at their place would (:func:`new_recent_items`), with a weight of at
    least ``new_items_weight``: without it a shopper who keeps viewing a new item
    is never shown it again. With ``bf16`` the
    transformer runs in bfloat16 (about 3x faster on a CPU; near ties may swap
    order). Users are scored ``chunk_size`` at a time: full ranking keeps its
    ``(B, N)`` score rows in cache with chunks of 64 (about twice the users/s of 256
    on a CPU, ``bench/served_scoring.py``).
    """

    def __init__(
        self,
        checkpoint: Checkpoint,
        *,
        chunk_size: int = 64,
        bf16: bool = True,
        full_ranking: bool = False,
        new_items_weight: float = NEW_ITEMS_WEIGHT,
    ) -> None:
        if chunk_size < 1:
            raise ValueError("chunk_size must be >= 1")
        self._ranker = served_ranker(checkpoint, bf16=bf16, full_ranking=full_ranking)
        self._vocab = checkpoint.vocab
        self._ids = np.asarray(checkpoint.vocab.ids, dtype=object)
        parts = checkpoint.ranking or RankerParts(FusionWeights())
        self._new_items_weight = max(parts.weights.recent, new_items_weight)
        self._recent_decay = parts.recent_decay
        self._version = str(checkpoint.meta["version"])
        self._epsilon = trained_epsilon(checkpoint.meta)
        self._calibrator = checkpoint.calibrator
        self._chunk = chunk_size

    @classmethod
    def on_best_device(
        cls, checkpoint: Checkpoint, *, full_ranking: bool = False
    ) -> CheckpointScorer:
        """A scorer with the model on the GPU when there is one, else on the CPU."""
        checkpoint.model.to("cuda" if torch.cuda.is_available() else "cpu")
        return cls(checkpoint, full_ranking=full_ranking)

    @property
    def version(self) -> str:
        """The checkpoint's version id."""
        return self._version

    @property
    def epsilon(self) -> float:
        """The checkpoint's per-session ε (:func:`trained_epsilon`)."""
        return self._epsilon

    @property
    def calibrator(self) -> ClickCalibrator | None:
        """The checkpoint's calibrator, fitted on its validation split; None when it has none."""
        return self._calibrator

    def knows(self, item_id: str) -> bool:
        """Whether the item is in the checkpoint's vocabulary."""
        return item_id in self._vocab.index

    def score_many(self, histories: Sequence[Sequence[str]], /, *, k: int) -> list[ScoredItems]:
        """Top-``k`` next items per history, in chunks of ``chunk_size`` users per call."""
        encoded = [[i for i in self._vocab.encode(history) if i] for history in histories]
        # Chunks of similar lengths: a chunk is padded to its longest history.
        scorable = sorted(
            (row for row, items in enumerate(encoded) if items), key=lambda row: len(encoded[row])
        )
        out: list[ScoredItems] = [[] for _ in histories]
        k = min(k, len(self._vocab) - 1)
        for start in range(0, len(scorable), self._chunk):
            rows = scorable[start : start + self._chunk]
            with torch.inference_mode():
                top_scores, top_items = self._ranker.top_k([encoded[row] for row in rows], k)
            values, names = rounded(top_scores), self._ids[top_items.cpu().numpy()].tolist()
            for row, scores, items in zip(rows, values, names, strict=True):
                pairs = list(zip(items, scores, strict=True))
                # Best first: a list with fewer than k candidates ends in -inf.
                finite = not pairs or pairs[-1][1] > -math.inf
                out[row] = pairs if finite else [p for p in pairs if p[1] > -math.inf]
        weight, decay = self._new_items_weight, self._recent_decay
        for row in scorable:
            new = new_recent_items(histories[row], self.knows, weight=weight, decay=decay)
            if new:
                merged = sorted([*out[row], *new.items()], key=lambda pair: (-pair[1], pair[0]))
                out[row] = merged[:k]
        return out


def rounded(scores: torch.Tensor) -> list[list[float]]:
    """``round(score, 6)`` of every float32 score, in one call: exactly what Python's gives.

    A float32 has 24 significant bits, so ``score * 1e6`` is exact in float64; rounding
    it half to even is the decimal rounding ``round`` does, and the division by 1e6 is
    correctly rounded, as Python's reading of the rounded digits is. One call instead
    of one ``round`` a score keeps a sponsored items' deep list (100 a shopper) cheap.

    Raises:
        ValueError: ``scores`` is not float32 (wider scores may not be exact times 1e6).

    Examples:
        >>> rounded(torch.tensor([[0.1234565, float("-inf")]]))
        [[0.123457, -inf]]
    """
    if scores.dtype != torch.float32:
        raise ValueError(f"scores must be float32, got {scores.dtype}")
    wide = scores.double()
    values: list[list[float]] = (torch.round(wide * 1e6) / 1e6).tolist()
    return values


def trained_epsilon(meta: Mapping[str, Any]) -> float:
    """The per-session ε in a checkpoint's ``privacy``; ``inf`` when it is null (not DP-trained).

    Raises:
        ValueError: ``privacy`` is neither null nor an object with a number ``epsilon`` >= 0.

    Examples:
        >>> trained_epsilon({"privacy": {"epsilon": 0.9, "delta": 1e-6}})
        0.9
        >>> trained_epsilon({"privacy": None})
        inf
    """
    privacy = meta.get("privacy")
    if privacy is None:
        return math.inf
    epsilon = privacy.get("epsilon") if isinstance(privacy, Mapping) else None
    if isinstance(epsilon, bool) or not isinstance(epsilon, int | float) or not epsilon >= 0:
        raise ValueError(f"the checkpoint's privacy has no valid epsilon: {privacy!r}")
    return float(epsilon)


def new_recent_items(
    history: Sequence[str],
    known: Callable[[str], bool],
    *,
    weight: float,
    decay: float,
    depth: int = 16,
) -> dict[str, float]:
    """Scores of the history's items outside the vocabulary, as the recent-items part gives.

    ``weight * decay ** distance from the latest event / sum of the weights`` over
    the last ``depth`` events (older ones weigh under ``decay ** depth``), summed
    per item: what the served mix's recent-items part would give a known item there.

    Examples:
        >>> new_recent_items(["a", "x", "b"], lambda item: item != "x", weight=0.2, decay=0.5)
        {'x': 0.057143}
    """
    recent = history[-depth:]
    weights = [decay ** (len(recent) - 1 - position) for position in range(len(recent))]
    total = sum(weights)
    scores: dict[str, float] = {}
    for item, item_weight in zip(recent, weights, strict=True):
        if not known(item):
            scores[item] = scores.get(item, 0.0) + item_weight
    return {item: round(weight * value / total, 6) for item, value in scores.items()}
