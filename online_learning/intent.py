"""Online purchase intent: will this session still buy?

A river ``StandardScaler | LogisticRegression`` learned one event at a time on
a few streaming counters; the intent model the worker serves. ``bench/intent.py``
measures it on RetailRocket beside a transformer trained jointly for intent
(which did no better than a small network on these counters alone).

The features come from :func:`intent_features`, which takes plain numbers so
that ``streams`` can call it without this package importing ``streams``.

Examples:
    >>> model = IntentModel()
    >>> buyer = intent_features(
    ...     [3, 0, 0, 2, 0], session_events=5, session_carts=2, distinct_items=2,
    ...     last_type=EVENT_TYPES.index("add_to_cart"),
    ... )
    >>> browser = intent_features(
    ...     [1, 0, 0, 0, 0], session_events=1, session_carts=0, distinct_items=1,
    ...     last_type=EVENT_TYPES.index("view"),
    ... )
    >>> for _ in range(50):
    ...     model.learn_many([buyer, browser], [True, False])
    >>> model.predict_one(buyer) > 0.5 > model.predict_one(browser)
    True
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import numpy.typing as npt
from river import base, compose, linear_model, optim, preprocessing

#: Event types, indexed like ``streams.pipeline.state.EVENT_TYPES`` (a test checks they agree;
#: this package may not import ``streams``).
EVENT_TYPES: tuple[str, ...] = ("view", "click", "search", "add_to_cart", "purchase")

#: Every key :func:`intent_features` can emit, in emission order.
INTENT_FEATURES: tuple[str, ...] = (
    *(f"n_{kind}" for kind in EVENT_TYPES),
    "session_events",
    "session_carts",
    "distinct_items",
    "session_minutes",
    "idle_minutes",
    *(f"last_{kind}" for kind in EVENT_TYPES),
)


def intent_features(
    type_counts: Sequence[float],
    *,
    session_events: int,
    session_carts: int,
    distinct_items: int,
    last_type: int,
    session_seconds: float | None = None,
    idle_seconds: float | None = None,
) -> dict[str, float]:
    """The intent model's features, from plain counters.

    Counts and durations are heavy-tailed, so they enter as ``log1p`` (on the
    RetailRocket sample, ROC-AUC 0.663 against 0.649 with raw counts; see
    ``bench/intent.py``, whose 212 test positives make that a weak signal).
    The last event type is one-hot over *all* types, zeros included: a key
    that is only ever present with the value 1 has zero variance in the
    scaler, which then maps it to 0 and the model never sees it.

    Args:
        type_counts: events per type, indexed like :data:`EVENT_TYPES` (the
            caller picks the scope: this session, or the user's lifetime).
        session_events: events in the current session.
        session_carts: add-to-carts in the current session.
        distinct_items: distinct items in the window the caller keeps.
        last_type: index into :data:`EVENT_TYPES` of the last event, -1 if none.
        session_seconds: seconds from the session's first to its last event;
            ``None`` leaves ``session_minutes`` out (the model then ignores it).
        idle_seconds: seconds between the last two events; ``None`` leaves
            ``idle_minutes`` out. Negative durations (events out of order)
            count as 0.

    Returns:
        Feature name to value, keys from :data:`INTENT_FEATURES`.

    Raises:
        ValueError: If ``type_counts`` does not have one count per event type
            or ``last_type`` is out of range.

    Examples:
        >>> x = intent_features(
        ...     [2, 0, 0, 1, 0], session_events=3, session_carts=1, distinct_items=2,
        ...     last_type=3, session_seconds=120.0,
        ... )
        >>> round(x["n_view"], 4), round(x["session_minutes"], 4), x["last_add_to_cart"]
        (1.0986, 1.0986, 1.0)
        >>> "idle_minutes" in x, x["last_view"]
        (False, 0.0)
    """
    if len(type_counts) != len(EVENT_TYPES):
        raise ValueError(f"expected {len(EVENT_TYPES)} type counts, got {len(type_counts)}")
    if not -1 <= last_type < len(EVENT_TYPES):
        raise ValueError(f"last_type must be in [-1, {len(EVENT_TYPES)}), got {last_type}")
    out = {
        f"n_{kind}": math.log1p(count) for kind, count in zip(EVENT_TYPES, type_counts, strict=True)
    }
    out["session_events"] = math.log1p(session_events)
    out["session_carts"] = math.log1p(session_carts)
    out["distinct_items"] = math.log1p(distinct_items)
    if session_seconds is not None:
        out["session_minutes"] = math.log1p(max(session_seconds, 0.0) / 60)
    if idle_seconds is not None:
        out["idle_minutes"] = math.log1p(max(idle_seconds, 0.0) / 60)
    for index, kind in enumerate(EVENT_TYPES):
        out[f"last_{kind}"] = float(index == last_type)
    return out


class IntentModel(base.Base):
    """P(purchase later in this session), learned online.

    A river pipeline ``StandardScaler | LogisticRegression(SGD(lr), l2)``. Each
    feature dict is put in sorted key order first, so that the result does not
    depend on the order the caller built it in (float sums are not
    associative). A feature missing from a dict is ignored (it neither moves
    the scaler nor the weights); a new one gets its own weight from then on.

    Unlike a river classifier, :meth:`predict_one` returns the probability
    itself, which is what the serving path ranks and logs.

    Args:
        lr: SGD learning rate of the weights.
        l2: L2 penalty on the weights.
        intercept_lr: learning rate of the intercept (river's default, 0.01).

    Raises:
        ValueError: If ``lr`` is not positive or ``l2`` is negative.

    Examples:
        >>> model = IntentModel(lr=0.05)
        >>> model.predict_one({"n_view": 1.0})  # nothing learned yet
        0.5
        >>> model.learn_one({"n_view": 1.0, "n_add_to_cart": 2.0}, True)
        >>> model.learn_one({"n_view": 3.0, "n_add_to_cart": 0.0}, False)
        >>> model.predict_one({"n_add_to_cart": 2.0, "n_view": 1.0}) > 0.5
        True
    """

    def __init__(self, *, lr: float = 0.01, l2: float = 0.0, intercept_lr: float = 0.01) -> None:
        if not lr > 0 or not intercept_lr > 0:
            raise ValueError(f"lr and intercept_lr must be > 0, got {lr}, {intercept_lr}")
        if not l2 >= 0:
            raise ValueError(f"l2 must be >= 0, got {l2}")
        self.lr = lr
        self.l2 = l2
        self.intercept_lr = intercept_lr
        self._pipeline: compose.Pipeline = preprocessing.StandardScaler() | (
            linear_model.LogisticRegression(
                optimizer=optim.SGD(lr), l2=l2, intercept_lr=intercept_lr
            )
        )

    def learn_one(self, features: Mapping[str, float], purchased: bool) -> None:
        """Update on one case.

        Args:
            features: from :func:`intent_features` (any ``str -> float`` works).
            purchased: whether the session went on to buy.

        Raises:
            ValueError: If a feature value is NaN or infinite (it would poison
                the scaler's running mean for good).
        """
        self._pipeline.learn_one(_canonical(features), bool(purchased))

    def learn_weighted(
        self, features: Mapping[str, float], purchased: bool, *, weight: float
    ) -> None:
        """Update on a case that stands for ``weight`` cases (the gradient step scales by it)."""
        self._pipeline.learn_one(_canonical(features), bool(purchased), w=float(weight))

    def predict_one(self, features: Mapping[str, float]) -> float:
        """Probability of a purchase; learns nothing.

        Args:
            features: as in :meth:`learn_one`.

        Returns:
            P(purchase) in [0, 1]; 0.5 before any learning.

        Raises:
            ValueError: If a feature value is NaN or infinite.
        """
        proba: dict[bool, float] = self._pipeline.predict_proba_one(_canonical(features))
        return float(proba[True])

    def learn_many(
        self, features: Sequence[Mapping[str, float]], purchased: Sequence[bool]
    ) -> None:
        """Update on a batch, in order: the same as :meth:`learn_one` on each case.

        river's own ``learn_many`` averages one gradient over the batch (and
        needs pandas); here each case takes its own SGD step, so a batch
        learns exactly what the same events would one by one.

        Args:
            features: ``B`` feature dicts.
            purchased: ``B`` labels.

        Raises:
            ValueError: If the lengths differ or a value is not finite.
        """
        if len(features) != len(purchased):
            raise ValueError(f"{len(features)} feature dicts but {len(purchased)} labels")
        for x, y in zip(features, purchased, strict=True):
            self.learn_one(x, y)

    def predict_many(self, features: Sequence[Mapping[str, float]]) -> npt.NDArray[np.float64]:
        """Probabilities for a batch; learns nothing.

        Args:
            features: ``B`` feature dicts.

        Returns:
            ``(B,)`` float64 probabilities, equal to :meth:`predict_one` on each.

        Raises:
            ValueError: If a value is not finite.
        """
        return np.fromiter((self.predict_one(x) for x in features), np.float64, len(features))


def _canonical(features: Mapping[str, float]) -> dict[str, float]:
    """``features`` as floats in sorted key order; rejects NaN and infinities."""
    out = {key: float(features[key]) for key in sorted(features)}
    if not all(map(math.isfinite, out.values())):
        bad = sorted(key for key, value in out.items() if not math.isfinite(value))
        raise ValueError(f"non-finite intent features: {bad}")
    return out


#: Upper bounds of the session-length buckets of an intent cell (the last is open).
EVENT_BUCKETS: tuple[int, ...] = (1, 2, 4, 8)
#: Carts in a session at or above this share one bucket.
CART_BUCKETS = 3


def intent_cell(last_type: int, session_events: int, session_carts: int) -> str:
    """The coarse cell a user's intent is learned and predicted by, e.g. ``"3.2.1"``.

    Shared intent counts are released per cell with differential privacy, so a
    cell must be coarse enough for its counts to pass the release threshold: the
    last event type, the session length in doubling buckets, and the carts (0-3+).

    Examples:
        >>> intent_cell(3, 5, 1), intent_cell(0, 40, 9)
        ('3.3.1', '0.4.3')
    """
    length = bisect.bisect_left(EVENT_BUCKETS, session_events)  # bounds below the length
    return f"{last_type}.{length}.{min(session_carts, CART_BUCKETS)}"


def cell_features(cell: str) -> dict[str, float]:
    """The river model's features of a cell: the last type one-hot, length and carts.

    Examples:
        >>> x = cell_features("3.3.1")
        >>> x["last_add_to_cart"], x["last_view"], x["session_carts"]
        (1.0, 0.0, 1.0)
    """
    last_type, length, carts = (int(part) for part in cell.split("."))
    out = {f"last_{kind}": float(index == last_type) for index, kind in enumerate(EVENT_TYPES)}
    out["session_events"] = float(length)
    out["session_carts"] = float(carts)
    return out


class CellIntent:
    """The river intent model, learned from differentially private counts per cell.

    Each release is a noisy count of (cell, purchase next or not) cases over a
    window. The counts add up into a small table (at most a few hundred cells).
    The model is refitted to the whole table, about ``steps`` steps in passes
    over it, one per entry weighted by its share of the cases (mean weight 1),
    from where it stood: a logistic regression fitted to everything released so
    far. It learns nothing else, so it is as private as the counts
    (post-processing). A refit costs about 25-80 ms, so it happens at the first
    prediction after a release, and at most once per ``refit_seconds`` of wall
    time: in production windows end hourly, but a replay can end hundreds of
    windows a minute. Before ``min_weight`` counted cases it answers None (the
    caller falls back to a simpler rate).

    Examples:
        >>> intent = CellIntent(min_weight=10)
        >>> intent.predict("3.1.1") is None
        True
        >>> intent.learn_released([("3.1.1", True, 40), ("0.1.0", False, 60)])
        >>> intent.predict("3.1.1") > 0.5 > intent.predict("0.1.0")
        True
    """

    def __init__(
        self,
        *,
        min_weight: float = 1_000.0,
        lr: float = 0.1,
        steps: int = 4_000,
        refit_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # The base rate matters most here (purchases are rare): the intercept learns as fast.
        self.model = IntentModel(lr=lr, intercept_lr=lr)
        self.min_weight = min_weight
        self.steps = steps
        self.refit_seconds = refit_seconds
        self._clock = clock
        self._fitted_at = -math.inf
        self._stale = False
        self._counts: dict[tuple[str, bool], float] = {}
        self._cache: dict[str, float] = {}
        #: Cases released so far (the noisy counts' sum); kept, as every prediction reads it.
        self.weight = 0.0

    def learn_released(self, released: Sequence[tuple[str, bool, int]]) -> None:
        """Add one window's released ``(cell, purchased, noisy count)`` entries."""
        for cell, purchased, count in released:
            if count > 0:
                key = (cell, bool(purchased))
                self._counts[key] = self._counts.get(key, 0.0) + count
                self.weight += count
                self._stale = True

    def predict(self, cell: str) -> float | None:
        """P(the next event is a purchase) in ``cell``; None while too little was learned."""
        if self.weight < self.min_weight:
            return None
        if self._stale and self._clock() - self._fitted_at >= self.refit_seconds:
            self._refit()
        cached = self._cache.get(cell)
        if cached is None:
            cached = self._cache[cell] = self.model.predict_one(cell_features(cell))
        return cached

    def _refit(self) -> None:
        table = sorted(self._counts.items())
        scale = len(table) / sum(cases for _, cases in table)
        for _ in range(math.ceil(self.steps / len(table))):
            for (cell, purchased), cases in table:
                self.model.learn_weighted(cell_features(cell), purchased, weight=cases * scale)
        self._fitted_at, self._stale = self._clock(), False
        self._cache.clear()
