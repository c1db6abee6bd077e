"""Online serving: behaviour scores for a batch of users, shaped by the event's context.

* :class:`CheckpointScorer` serves a trained :class:`~model.scorer.SequenceScorer`
  through its batched ``score_many``, under inference mode, in bounded chunks,
  with the normalised item table computed once.
* :class:`ContextRanker` turns behaviour scores into the recommendation of one
  event: for a ``search`` it ranks the catalogue items most relevant to the query
  (multilingual title vectors) and personalises them with the user's behaviour
  scores; for browsing it adds cold-start items (a title, no history) close in
  meaning to what the user just looked at. When the primary scorer knows none
  of a user's items, the fallback (the stream-learned baseline) answers, and the
  result names the version that produced it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from model.batches import pad_histories
from model.calibration import ClickCalibrator
from model.checkpoint import Checkpoint
from model.ranking.parts import FusionWeights, RankerParts
from model.ranking.ranker import served_ranker
from model.scorer import SequenceScorer
from model.serving.baseline import top_up
from model.serving.catalogue import FloatArray, TextCatalogue
from model.vocab import ItemVocab

ScoredItems = list[tuple[str, float]]

#: Encodes query texts into ``(Q, D)`` unit vectors (``TextEncoder.encode_many``).
QueryEncoder = Callable[[Sequence[str]], FloatArray]


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


def top_items(
    model: SequenceScorer, vocab: ItemVocab, prefixes: Sequence[Sequence[str]], *, k: int
) -> list[list[str]]:
    """A model's top-``k`` item ids per prefix, in one call (``[]`` when it knows none).

    For a model that changes between calls (learning); :class:`CheckpointScorer`
    serves a fixed one faster.
    """
    encoded = [[i for i in vocab.encode(prefix) if i] for prefix in prefixes]
    rows = [row for row, items in enumerate(encoded) if items]
    out: list[list[str]] = [[] for _ in prefixes]
    if not rows:
        return out
    batch = pad_histories([encoded[row] for row in rows], max_len=model.config.max_len)
    device = next(model.parameters()).device
    with torch.inference_mode():
        scores = model.score_many(batch.to(device))
        top = scores.topk(min(k, len(vocab) - 1), dim=-1).indices.cpu().tolist()
    for row, indices in zip(rows, top, strict=True):
        out[row] = [vocab.ids[i] for i in indices]
    return out


@dataclass(frozen=True)
class RankRequest:
    """One event to answer: the user's recent items (oldest first) and a search query."""

    history: Sequence[str]
    query: str | None = None


@dataclass(frozen=True)
class Ranked:
    """The answer to one :class:`RankRequest`.

    ``deep`` is the same ranking ``depth`` items deep when :meth:`ContextRanker.rank_many`
    was asked for it (``items`` is its first ``top_k``), else None.
    """

    items: ScoredItems
    context: str
    model_version: str
    deep: ScoredItems | None = None


@dataclass(frozen=True)
class RankerConfig:
    """How behaviour and text relevance combine (defaults chosen by the tests' catalogue).

    Attributes:
        top_k: items per recommendation.
        search_candidates: catalogue items most similar to the query that are ranked.
        personal_weight: weight of the user's (max-normalised) behaviour score
            added to a search candidate's query similarity.
        cold_min_similarity: a cold item joins a browse list only when its title is
            at least this similar to the user's recent items.
        profile_items: recent items whose titles form the user's text profile.
    """

    top_k: int = 20
    search_candidates: int = 200
    personal_weight: float = 0.3
    cold_min_similarity: float = 0.4
    profile_items: int = 5


class ContextRanker:
    """Answers a batch of events: behaviour scores, then query relevance or cold start."""

    def __init__(
        self,
        primary: ItemScorer,
        *,
        fallback: ItemScorer,
        catalogue: TextCatalogue | None = None,
        encode_queries: QueryEncoder | None = None,
        config: RankerConfig = RankerConfig(),
    ) -> None:
        self.primary = primary
        self.fallback = fallback
        self._catalogue = catalogue
        self._encode = encode_queries
        self._config = config

    def rank_many(self, requests: Sequence[RankRequest], *, depth: int = 0) -> list[Ranked]:
        """One :class:`Ranked` per request, in order; one scorer call per scorer.

        A request with a query is answered in the ``search`` context; with no
        catalogue yet its items are the behaviour scores alone. With ``depth``, each
        answer also carries the ranking ``depth`` items deep (the sponsored items'
        candidates), from the same calls; its ``items`` are those it has without.
        """
        if not requests:
            return []
        catalogue = (
            self._catalogue if self._catalogue is not None and len(self._catalogue) else None
        )
        searchable = catalogue is not None and self._encode is not None
        search = [row for row, r in enumerate(requests) if r.query is not None and searchable]
        size = max(self._config.top_k, depth)
        k = max(self._config.search_candidates, size) if search else size
        behaviour, versions = self._behaviour([r.history for r in requests], k=k)
        cold = self._cold_rows(catalogue)
        answers = [
            Ranked(
                self._with_cold_items(request.history, scored, cold, size=size),
                "browse" if request.query is None else "search",
                version,
            )
            for request, scored, version in zip(requests, behaviour, versions, strict=True)
        ]
        if search and catalogue is not None and self._encode is not None:
            vectors = self._encode([str(requests[row].query) for row in search])
            ranked = self._search(catalogue, vectors, [behaviour[row] for row in search], size)
            for row, items in zip(search, ranked, strict=True):
                answers[row] = Ranked(items, "search", versions[row])
        self._fill_short(requests, answers, size=size)
        if depth:
            top_k = self._config.top_k
            return [
                Ranked(a.items[:top_k], a.context, a.model_version, a.items[:depth])
                for a in answers
            ]
        return answers

    def _fill_short(
        self, requests: Sequence[RankRequest], answers: list[Ranked], *, size: int
    ) -> None:
        """Top up the primary's browse lists shorter than ``top_k`` from the fallback, to ``size``.

        A model whose vocabulary is smaller than the list (a young model, a large
        catalogue) leaves room that the stream baseline, filled from the catalogue,
        can take: its items follow the model's, scored no higher than the model's last.
        """
        short = [
            row
            for row, answer in enumerate(answers)
            if answer.context == "browse"
            and 0 < len(answer.items) < self._config.top_k
            and answer.model_version != self.fallback.version
        ]
        if not short:
            return
        extra = self.fallback.score_many([requests[row].history for row in short], k=size)
        for row, backup in zip(short, extra, strict=True):
            answer = answers[row]
            items = list(answer.items)
            top_up(items, backup, k=size, ceiling=items[-1][1])
            answers[row] = Ranked(items, answer.context, answer.model_version)

    def _behaviour(
        self, histories: list[Sequence[str]], *, k: int
    ) -> tuple[list[ScoredItems], list[str]]:
        scored = self.primary.score_many(histories, k=k)
        versions = [self.primary.version] * len(histories)
        missing = [row for row, items in enumerate(scored) if not items]
        if missing and self.primary is not self.fallback:
            backup = self.fallback.score_many([histories[row] for row in missing], k=k)
            for row, items in zip(missing, backup, strict=True):
                scored[row], versions[row] = items, self.fallback.version
        return scored, versions

    def _search(
        self,
        catalogue: TextCatalogue,
        queries: FloatArray,
        behaviour: list[ScoredItems],
        size: int,
    ) -> list[ScoredItems]:
        """The nearest titles' query similarity plus the weighted behaviour score, top ``size``."""
        config, ids = self._config, catalogue.ids
        n_candidates = min(config.search_candidates, len(catalogue))
        out = []
        for sims, scored in zip(catalogue.similarity_rows(queries), behaviour, strict=True):
            candidates = np.argpartition(-sims, n_candidates - 1)[:n_candidates]
            prior = _max_normalised(scored)
            ranked = sorted(
                (
                    (ids[c], float(sims[c]) + config.personal_weight * prior.get(ids[c], 0.0))
                    for c in candidates
                ),
                key=lambda pair: (-pair[1], pair[0]),
            )
            out.append([(item, round(score, 6)) for item, score in ranked[:size]])
        return out

    def _cold_rows(self, catalogue: TextCatalogue | None) -> ColdItems | None:
        """Catalogue items the primary scorer has no evidence for, once per batch."""
        if catalogue is None:
            return None
        rows = [row for row, item in enumerate(catalogue.ids) if not self.primary.knows(item)]
        if not rows:
            return None
        return ColdItems(catalogue, [catalogue.ids[row] for row in rows], catalogue.matrix[rows])

    def _with_cold_items(
        self, history: Sequence[str], scored: ScoredItems, cold: ColdItems | None, *, size: int
    ) -> ScoredItems:
        """Behaviour's top ``size``, with cold items near the user's recent titles merged in.

        A cold item scores ``similarity x`` the top behaviour score, so it ranks
        against known items by how close its title is to what the user viewed.
        """
        top = scored[:size]
        if cold is None or not history:
            return top
        profile = cold.catalogue.profile(history[-self._config.profile_items :])
        if profile is None:
            return top
        scale = max(top[0][1], 1e-3) if top else 1.0
        seen = set(history)
        extra = [
            (item, round(float(sim) * scale, 6))
            for item, sim in zip(cold.ids, cold.vectors @ profile, strict=True)
            if sim >= self._config.cold_min_similarity and item not in seen
        ]
        merged = sorted([*top, *extra], key=lambda pair: (-pair[1], pair[0]))
        return merged[:size]


@dataclass(frozen=True)
class ColdItems:
    """The catalogue's cold items of one batch: ids and their ``(C, D)`` title vectors."""

    catalogue: TextCatalogue
    ids: list[str]
    vectors: FloatArray


def _max_normalised(scored: ScoredItems) -> dict[str, float]:
    """Scores divided by the best one, so every user's prior spans (0, 1]."""
    if not scored or scored[0][1] <= 0:
        return {}
    best = scored[0][1]
    return {item: score / best for item, score in scored}
