"""Online purchase-intent baseline: will this session still buy?

A river ``StandardScaler | LogisticRegression`` learned one event at a time on
a few streaming counters (issue 5, "Learn while serving"). It runs beside the
transformer's intent head as a cheap baseline and fallback. ``bench/intent.py``
measures it on RetailRocket.

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

import math
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt
from river import base, compose, linear_model, optim, preprocessing

#: Event types, indexed like ``streams.features.EVENT_TYPES`` (a test checks they agree;
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

    def __init__(self, *, lr: float = 0.01, l2: float = 0.0) -> None:
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if not l2 >= 0:
            raise ValueError(f"l2 must be >= 0, got {l2}")
        self.lr = lr
        self.l2 = l2
        self._pipeline: compose.Pipeline = preprocessing.StandardScaler() | (
            linear_model.LogisticRegression(optimizer=optim.SGD(lr), l2=l2)
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
