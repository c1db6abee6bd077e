"""Online serving: a batch of users' behaviour scores, shaped by each event's context.

:class:`ContextRanker` turns behaviour scores into the recommendation of one
  event: for a ``search`` it ranks the catalogue items most relevant to the query
  (multilingual title vectors) and personalises them with the user's behaviour
  scores; for browsing it adds cold-start items (a title, no history) close in
  meaning to what the user just looked at. When the primary scorer knows none
  of a user's items, the fallback (the stream-learned baseline) answers, and the
  result names the version that produced it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from model.batches import pad_histories
from model.scorer import SequenceScorer
from model.serving.baseline import top_up
from model.serving.catalogue import FloatArray, TextCatalogue
from model.serving.scorers import ItemScorer, ScoredItems
from model.vocab import ItemVocab

#: Encodes query texts into ``(Q, D)`` unit vectors (``TextEncoder.encode_many``).
QueryEncoder = Callable[[Sequence[str]], FloatArray]


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
