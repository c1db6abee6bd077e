"""Honest baselines learned from the stream itself, with no training step.

Used until a trained transformer is loaded, and kept as its fallback:

* :class:`CooccurrenceRecommender`: "shoppers who looked at X next looked at Y"
  counted over each user's consecutive items, then the user's own recent items,
  then popular items of the categories the user looked at, then popular items and
  the rest of the public catalogue, so that every list is full once the catalogue
  is known. In the worker it learns only from differentially private releases
  (``streams.pipeline.shared_counts``), whose popularity covers every catalogued
  item, noisy, with no threshold.
* :class:`NextPurchaseRate`: the purchase intent is the observed rate at which an
  event of a given type is followed by a purchase from the same user.

Both update per observed event (a dict increment): the ordering of updates
matters for the outputs, and per-event updates keep a batch's result identical to
processing the same events one by one.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence

from model.calibration import ClickCalibrator
from model.serving.catalogue import CatalogueItems

#: Weights of the user's most recent items when summing their neighbours.
RECENCY_WEIGHTS: tuple[float, ...] = (1.0, 0.5, 0.25)
#: Scale of the user's own recent items: below co-occurrence evidence, above popularity.
RECENT_SCALE = 0.05
#: Scale of popularity scores below any co-occurrence evidence.
POPULARITY_SCALE = 0.01

ScoredItems = list[tuple[str, float]]

#: Model version named in recommendations the co-occurrence baseline produced.
BASELINE_VERSION = "baseline-cooc-1"


class CooccurrenceRecommender:
    """Item-to-next-item counts plus popularity, learned one event at a time.

    Examples:
        >>> rec = CooccurrenceRecommender(refresh_every=1)
        >>> for history, item in [([], "a"), (["a"], "b"), ([], "a"), (["a"], "b"), ([], "c")]:
        ...     rec.learn_one(history, item)
        >>> [item for item, _ in rec.recommend(["a"], k=3)]
        ['b', 'a', 'c']
    """

    def __init__(
        self, *, refresh_every: int = 1_000, catalogue: CatalogueItems | None = None
    ) -> None:
        if refresh_every < 1:
            raise ValueError("refresh_every must be >= 1")
        self._catalogue = catalogue if catalogue is not None else CatalogueItems()
        self._next: defaultdict[str, Counter[str]] = defaultdict(Counter)
        #: Each row's total, kept beside it: a recommendation reads up to 5 rows.
        self._next_totals: Counter[str] = Counter()
        self._popularity: Counter[str] = Counter()
        self._events = 0
        self._refresh_every = refresh_every
        self._popular: ScoredItems = []
        self._popular_at = -1
        self._popular_version = -1
        #: Category -> its most popular items, refreshed with :attr:`_popular`.
        self._category_popular: dict[str, ScoredItems] = {}

    @property
    def n_items(self) -> int:
        """Distinct items seen so far."""
        return len(self._popularity)

    @property
    def version(self) -> str:
        """The baseline's model version (``model.serving.scorers.ItemScorer``)."""
        return BASELINE_VERSION

    @property
    def epsilon(self) -> float:
        """NaN: no per-session ε; in the worker it learns only from DP releases (per window)."""
        return math.nan

    @property
    def calibrator(self) -> ClickCalibrator | None:
        """None: its lists were never measured by rank, so they carry no sponsored slot."""
        return None

    def knows(self, item_id: str) -> bool:
        """Whether ``item_id`` has been seen in the stream."""
        return item_id in self._popularity

    def score_many(self, histories: Sequence[Sequence[str]], /, *, k: int) -> list[ScoredItems]:
        """:meth:`recommend` for each history (``model.serving.scorers.ItemScorer``)."""
        return [self.recommend(history, k=k) for history in histories]

    def learn_one(self, history: Sequence[str], item: str) -> None:
        """Count ``item`` after the user's previous item (``history[-1]``)."""
        transitions = {(history[-1], item): 1} if history else {}
        self.learn_counts({item: 1}, transitions)

    def learn_counts(
        self, popularity: Mapping[str, int], transitions: Mapping[tuple[str, str], int]
    ) -> None:
        """Add released counts: item -> count, and (item, next item) -> count."""
        for (previous, item), count in transitions.items():
            self._next[previous][item] += count
            self._next_totals[previous] += count
        for item, count in popularity.items():
            self._popularity[item] += count
            self._events += max(count, 0)

    def recommend(self, history: Sequence[str], *, k: int) -> ScoredItems:
        """Top-``k`` (item, score) for a user whose recent items are ``history``.

        Scores are in [0, 1]: a recency-weighted share of next-item transitions,
        then the user's own recent items (their own data, most recent first, at
        most :data:`RECENT_SCALE`), then, to fill up, popular items of the
        categories of the user's recent items, popular items, and the rest of the
        catalogue (at most :data:`POPULARITY_SCALE`, never rising down the list).
        Ties break by item id, so the output is deterministic.
        """
        scores: defaultdict[str, float] = defaultdict(float)
        recent = list(reversed(history[-len(RECENCY_WEIGHTS) :]))
        total_weight = sum(RECENCY_WEIGHTS[: len(recent)]) or 1.0
        for weight, seen in zip(RECENCY_WEIGHTS, recent, strict=False):
            row = self._next.get(seen)
            if not row:
                continue
            share = weight / (self._next_totals[seen] * total_weight)
            for candidate, count in row.items():
                scores[candidate] += count * share
        # (-score, item) tuples compare in C; a key function would run per candidate.
        best = [
            (item, round(-neg, 6))
            for neg, item in heapq.nsmallest(k, [(-v, i) for i, v in scores.items()])
        ]
        chosen = {item for item, _ in best}
        for rank, item in enumerate(dict.fromkeys(reversed(history))):
            if len(best) >= k:
                break
            if item not in chosen:
                best.append((item, round(RECENT_SCALE / (rank + 1), 6)))
                chosen.add(item)
        if len(best) < k:
            ceiling = best[-1][1] if best else POPULARITY_SCALE
            top_up(best, self._fill(history, k + len(chosen)), k=k, ceiling=ceiling)
        return best  # every score was rounded where it was made; min() keeps that

    def _fill(self, history: Sequence[str], k: int) -> Iterator[tuple[str, float]]:
        """Fill candidates, best first: popular in the user's categories, popular, the rest."""
        self._refresh(k)
        categories = (self._catalogue.category(item) for item in reversed(history))
        for category in dict.fromkeys(c for c in categories if c is not None):
            yield from self._category_popular.get(category, [])[:k]
        yield from self._popular[:k]
        if len(self._popular) < k:
            yield from ((item, 0.0) for item in self._catalogue)

    def _refresh(self, k: int) -> None:
        """Rank popular items (it is O(items)) every ``refresh_every`` events learned,
        and whenever the catalogue changed."""
        stale = (
            self._events - self._popular_at >= self._refresh_every
            or self._popular_version != self._catalogue.version
        )
        if not stale and len(self._popular) >= min(k, len(self._popularity)):
            return
        total = max(sum(n for n in self._popularity.values() if n > 0), 1)
        ranked = max(k, 100)
        self._popular = heapq.nsmallest(
            ranked, self._shares(self._popularity.items(), total), key=_rank_key
        )
        self._category_popular = {
            category: heapq.nsmallest(
                ranked,
                self._shares(((item, self._popularity[item]) for item in items), total),
                key=_rank_key,
            )
            for category, items in self._catalogue.by_category().items()
        }
        self._popular_at, self._popular_version = self._events, self._catalogue.version

    @staticmethod
    def _shares(counts: Iterable[tuple[str, int]], total: int) -> Iterator[tuple[str, float]]:
        """(item, share of all positive counts x :data:`POPULARITY_SCALE`), at least 0."""
        return ((item, round(POPULARITY_SCALE * max(n, 0) / total, 6)) for item, n in counts)


def top_up(
    items: ScoredItems, candidates: Iterable[tuple[str, float]], *, k: int, ceiling: float
) -> None:
    """Append ``candidates`` not in ``items`` until it holds ``k``, scored no higher than
    ``ceiling`` or the item before them, so a list never rises as it goes down."""
    listed = {item for item, _ in items}
    for item, score in candidates:
        if len(items) >= k:
            return
        if item not in listed:
            ceiling = min(ceiling, score)
            items.append((item, ceiling))
            listed.add(item)


class NextPurchaseRate:
    """P(the user's next event is a purchase | the type of their current event).

    A Beta(1, 49) prior (2 %, roughly e-commerce conversion) keeps early estimates sane.

    Examples:
        >>> rate = NextPurchaseRate(n_types=5)
        >>> rate.learn_one(3, 4)  # add_to_cart followed by purchase
        >>> round(rate.predict_one(3), 4)
        0.0392
    """

    PRIOR_PURCHASES = 1.0
    PRIOR_TOTAL = 50.0

    def __init__(self, *, n_types: int, purchase_type: int = 4) -> None:
        self._purchases = [0] * n_types
        self._totals = [0] * n_types
        self.purchase_type = purchase_type

    def learn_one(self, previous_type: int, current_type: int) -> None:
        """Record that an event of ``previous_type`` was followed by ``current_type``."""
        self.learn_counts(previous_type, purchases=current_type == self.purchase_type, count=1)

    def learn_counts(self, previous_type: int, *, purchases: bool, count: int) -> None:
        """Record ``count`` events of ``previous_type`` followed by a purchase or not."""
        self._totals[previous_type] += count
        self._purchases[previous_type] += count if purchases else 0

    def predict_one(self, current_type: int) -> float:
        """Probability that the event after one of ``current_type`` is a purchase."""
        hits = self._purchases[current_type] + self.PRIOR_PURCHASES
        return hits / (self._totals[current_type] + self.PRIOR_TOTAL)


def _rank_key(pair: tuple[str, float]) -> tuple[float, str]:
    return (-pair[1], pair[0])
