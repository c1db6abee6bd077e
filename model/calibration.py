"""Calibrated click and purchase probabilities of an item by its position in a ranked list.

The served ranker's scores order items well but are not click rates: a sponsored
slot's expected value (bid x probability) needs how often shoppers actually take
the item at position r of the list they were served. :class:`ClickCalibrator`
holds that as a step function over fixed rank buckets (:data:`RANK_EDGES`),
fitted on held-out sessions by histogram binning made non-increasing in rank
with weighted isotonic regression (scipy's pool-adjacent-violators), plus the
same for purchases and a lift by the shopper's purchase intent.

Offline, a *click* is the shopper's next event being that item and a *purchase*
is the shopper buying that item later in the session. ``intentstream train``
fits one on the validation split (:mod:`model.training.calibration`) and stores
it as ``calibration.json`` beside the weights (:mod:`model.checkpoint`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import isotonic_regression

from model.threshold import check_positive, release_public_counts

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: File name of a calibrator inside a checkpoint or model version folder.
CALIBRATION_FILE = "calibration.json"
#: Bucket b covers 0-based ranks ``[RANK_EDGES[b], RANK_EDGES[b + 1])``: one bucket a
#: position where clicks are many, wider ones further down where they are rare.
#: The last edge is the fitted depth, the default ``ads_depth``.
RANK_EDGES: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 20, 30, 50, 100)
#: What one case adds to a private fit's counts: the case, one click, one purchase.
PRIVATE_CONTRIBUTION = 3


@dataclass(frozen=True)
class ClickCalibrator:
    """P(click) and P(purchase) of the item at a 0-based position of a served list.

    Ranks at or beyond the fitted depth (``edges[-1]``) get 0: nothing was measured
    there, and a probability of 0 keeps such an item out of any auction rather
    than guessing a rate for it.

    Attributes:
        edges: bucket bounds, from 0, strictly increasing.
        clicks: P(click) per bucket, non-increasing.
        purchases: P(purchase) per bucket at the fitting cases' mean intent lift,
            non-increasing.
        intent_points: purchase intents (increasing) at which ``intent_lift`` was
            fitted; empty: purchases do not depend on intent.
        intent_lift: multiplier of ``purchases`` at each point, non-decreasing;
            linear in between, constant beyond the ends.
        cases: fitting cases (lists served), noisy for a private fit.
        epsilon: the fit's privacy loss per session; None when fitted exactly.

    Examples:
        >>> calibrator = ClickCalibrator(edges=(0, 1, 3), clicks=(0.3, 0.1),
        ...                              purchases=(0.04, 0.01))
        >>> calibrator.probabilities(np.array([0, 2, 3])).tolist()
        [0.3, 0.1, 0.0]
        >>> calibrator.purchase_probabilities(np.array([0, 1]), np.array([0.2, 0.2])).tolist()
        [0.04, 0.01]
    """

    edges: tuple[int, ...]
    clicks: tuple[float, ...]
    purchases: tuple[float, ...]
    intent_points: tuple[float, ...] = ()
    intent_lift: tuple[float, ...] = ()
    cases: int = 0
    epsilon: float | None = None

    def __post_init__(self) -> None:
        edges = np.asarray(self.edges)
        if len(edges) < 2 or edges[0] != 0 or np.any(np.diff(edges) <= 0):
            raise ValueError(f"edges must start at 0 and increase: {self.edges}")
        buckets = len(edges) - 1
        for name in ("clicks", "purchases"):
            rates = np.asarray(getattr(self, name), dtype=np.float64)
            if len(rates) != buckets or not np.all((rates >= 0) & (rates <= 1)):
                raise ValueError(f"{name} must hold {buckets} probabilities")
            if np.any(np.diff(rates) > 0):
                raise ValueError(f"{name} must not increase with rank: {getattr(self, name)}")
        points, lift = np.asarray(self.intent_points), np.asarray(self.intent_lift)
        if len(points) != len(lift) or np.any(np.diff(points) <= 0) or np.any(np.diff(lift) < 0):
            raise ValueError("intent_points must increase and intent_lift not decrease, as pairs")
        if len(points) and not (points[0] >= 0 and points[-1] <= 1 and np.all(lift >= 0)):
            raise ValueError("intent points must lie in [0, 1] and lifts be >= 0")
        if self.cases < 0 or (self.epsilon is not None and not self.epsilon > 0):
            raise ValueError("cases must be >= 0 and epsilon > 0 or None")

    @property
    def depth(self) -> int:
        """Ranks below this have a fitted probability; deeper ones get 0."""
        return self.edges[-1]

    def probabilities(self, ranks: npt.ArrayLike) -> FloatArray:
        """P(click) of the item at each 0-based rank, same shape, float64.

        Raises:
            ValueError: a rank is negative.
        """
        return _padded(self.clicks)[self._buckets(ranks)]

    def purchase_probabilities(self, ranks: npt.ArrayLike, intent: npt.ArrayLike) -> FloatArray:
        """P(purchase) of the item at each rank, for a shopper with that purchase intent.

        Args:
            ranks: 0-based positions, any shape.
            intent: the shopper's purchase intent in [0, 1], broadcast against ``ranks``.

        Raises:
            ValueError: a rank is negative or an intent outside [0, 1].
        """
        base = _padded(self.purchases)[self._buckets(ranks)]
        intent = np.asarray(intent, dtype=np.float64)
        if not np.all((intent >= 0) & (intent <= 1)):
            raise ValueError("intent must lie in [0, 1]")
        if not self.intent_points:
            return np.broadcast_to(base, np.broadcast_shapes(base.shape, intent.shape)).copy()
        lift = np.interp(intent, self.intent_points, self.intent_lift)
        lifted: FloatArray = np.clip(base * lift, 0.0, 1.0)
        return lifted

    def _buckets(self, ranks: npt.ArrayLike) -> IntArray:
        ranks = np.asarray(ranks)
        if ranks.size and ranks.min() < 0:
            raise ValueError("ranks must be >= 0")
        # Ranks at or past the depth land on the padded 0.
        return np.searchsorted(np.asarray(self.edges), ranks, side="right").astype(np.int64) - 1

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form (:meth:`from_dict` reads it back)."""
        return {
            "edges": list(self.edges),
            "clicks": list(self.clicks),
            "purchases": list(self.purchases),
            "intent_points": list(self.intent_points),
            "intent_lift": list(self.intent_lift),
            "cases": self.cases,
            "epsilon": self.epsilon,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClickCalibrator:
        """Parse :meth:`to_dict`'s form.

        Raises:
            ValueError: a field is missing, of the wrong type or out of range.
        """
        try:
            epsilon = data["epsilon"]
            return cls(
                edges=tuple(int(v) for v in data["edges"]),
                clicks=tuple(float(v) for v in data["clicks"]),
                purchases=tuple(float(v) for v in data["purchases"]),
                intent_points=tuple(float(v) for v in data["intent_points"]),
                intent_lift=tuple(float(v) for v in data["intent_lift"]),
                cases=int(data["cases"]),
                epsilon=None if epsilon is None else float(epsilon),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a calibrator: {exc!r}") from None


@dataclass(frozen=True)
class RankOutcomes:
    """What the fitting cases' lists showed and what their shoppers did.

    Attributes:
        lengths: ``(C,)`` positions each case's list had (at most the depth).
        clicks: ``(C,)`` rank of the shopper's next item in the list, -1 when absent.
        purchase_ranks: ``(P,)`` ranks of listed items the shopper bought later.
        purchase_cases: ``(P,)`` the case of each of those.
        intent: ``(C,)`` the shopper's purchase intent per case; None: not known.
    """

    lengths: IntArray
    clicks: IntArray
    purchase_ranks: IntArray
    purchase_cases: IntArray
    intent: FloatArray | None = None

    def __post_init__(self) -> None:
        cases = len(self.lengths)
        if len(self.clicks) != cases or len(self.purchase_ranks) != len(self.purchase_cases):
            raise ValueError("one click rank per case, one case per purchase")
        if self.intent is not None and len(self.intent) != cases:
            raise ValueError("one intent per case")


def fit_calibrator(
    outcomes: RankOutcomes, *, edges: tuple[int, ...] = RANK_EDGES
) -> ClickCalibrator:
    """Histogram binning over rank buckets, made non-increasing (isotonic), with an intent lift.

    Raises:
        ValueError: there is no case.
    """
    if len(outcomes.lengths) == 0:
        raise ValueError("a calibrator needs at least one case")
    shown = _shown(outcomes.lengths, edges)
    clicks = _per_bucket(outcomes.clicks, edges)
    purchases = _per_bucket(outcomes.purchase_ranks, edges)
    click_rates, purchase_rates = _monotone(clicks, shown), _monotone(purchases, shown)
    points, lift = _intent_lift(outcomes, purchase_rates, edges)
    return ClickCalibrator(
        edges=edges,
        clicks=tuple(click_rates),
        purchases=tuple(purchase_rates),
        intent_points=points,
        intent_lift=lift,
        cases=len(outcomes.lengths),
    )


def fit_private_calibrator(
    outcomes: RankOutcomes,
    *,
    epsilon: float,
    list_length: int,
    edges: tuple[int, ...] = RANK_EDGES,
) -> tuple[ClickCalibrator | None, dict[str, Any]]:
    """The same fit from counts released with OpenDP's Laplace over the public rank buckets.

    Each case must be a different session's (one case a session): it adds 1 to the
    case count, at most 1 to a click bucket and at most 1 to a purchase bucket (its
    best-ranked purchase only), so the L1 sensitivity is :data:`PRIVATE_CONTRIBUTION`.
    Positions shown are taken from the noisy case count and the public
    ``list_length`` (every list taken as full); no intent lift (the intents would
    need a release of their own).

    Returns:
        The calibrator (None when the noisy case count is not positive) and the
        release's spend (epsilon, delta 0, mechanism, noisy cases).
    """
    check_positive("epsilon", epsilon)
    first = _first_purchase(outcomes)
    counts = np.concatenate(
        [
            [len(outcomes.lengths)],
            _per_bucket(outcomes.clicks, edges),
            _per_bucket(first, edges),
        ]
    ).astype(np.int64)
    noisy = release_public_counts(counts, max_keys=PRIVATE_CONTRIBUTION, epsilon=epsilon)
    cases = int(noisy[0])
    spend: dict[str, Any] = {
        "epsilon": epsilon,
        "delta": 0.0,
        "mechanism": "OpenDP Laplace over rank buckets",
        "cases": cases,
    }
    if cases <= 0:
        return None, spend
    buckets = len(edges) - 1
    full = np.full(cases, min(list_length, edges[-1]), dtype=np.int64)
    shown = _shown(full, edges)
    clicks = np.clip(noisy[1 : 1 + buckets], 0, None).astype(np.float64)
    purchases = np.clip(noisy[1 + buckets :], 0, None).astype(np.float64)
    calibrator = ClickCalibrator(
        edges=edges,
        clicks=tuple(_monotone(clicks, shown)),
        purchases=tuple(_monotone(purchases, shown)),
        cases=cases,
        epsilon=epsilon,
    )
    return calibrator, spend


def _shown(lengths: IntArray, edges: tuple[int, ...]) -> FloatArray:
    """Positions shown per bucket over lists of these lengths."""
    lengths = np.minimum(np.asarray(lengths, dtype=np.int64), edges[-1])
    low, high = np.asarray(edges[:-1]), np.asarray(edges[1:])
    per_list = np.clip(np.minimum(lengths[:, None], high) - low, 0, None)
    shown: FloatArray = per_list.sum(axis=0).astype(np.float64)
    return shown


def _per_bucket(ranks: IntArray, edges: tuple[int, ...]) -> FloatArray:
    """How many of ``ranks`` fall in each bucket (-1 and ranks past the depth: none)."""
    ranks = np.asarray(ranks, dtype=np.int64)
    ranks = ranks[(ranks >= 0) & (ranks < edges[-1])]
    return np.histogram(ranks, bins=np.asarray(edges))[0].astype(np.float64)


def _monotone(hits: FloatArray, shown: FloatArray) -> list[float]:
    """Rates ``hits / shown`` made non-increasing, weighted by ``shown``; 0 where nothing showed."""
    rates = np.zeros(len(shown))
    seen = shown > 0
    if seen.any():
        raw = np.clip(hits[seen] / shown[seen], 0.0, 1.0)
        rates[seen] = isotonic_regression(raw, weights=shown[seen], increasing=False).x
    # A bucket never shown lies past every list: 0, as past the depth.
    rates[~seen] = 0.0
    rates = np.minimum.accumulate(rates)
    return [float(r) for r in rates]


def _first_purchase(outcomes: RankOutcomes) -> IntArray:
    """Each case's best-ranked purchase: a private fit's bound of one purchase a case."""
    ranks = np.asarray(outcomes.purchase_ranks, dtype=np.int64)
    owners = np.asarray(outcomes.purchase_cases, dtype=np.int64)
    if ranks.size == 0:
        return ranks
    order = np.lexsort((ranks, owners))
    first = np.ones(len(order), dtype=bool)
    first[1:] = owners[order][1:] != owners[order][:-1]
    return ranks[order][first]


def _intent_lift(
    outcomes: RankOutcomes, rates: list[float], edges: tuple[int, ...]
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Purchases over what the rank rates expect, per intent, non-decreasing in intent.

    A ratio estimator: grouped by distinct intent, ``sum(purchases) / sum(expected)``
    pooled by weighted isotonic regression (weights = expected purchases), so the
    lifted rates still sum to the purchases seen. Kept at each pooled block's ends.
    """
    if outcomes.intent is None or not any(rates) or len(outcomes.purchase_ranks) == 0:
        return (), ()
    cumulative = np.concatenate([[0.0], np.cumsum(_shown_rates(rates, edges))])
    expected = cumulative[np.minimum(outcomes.lengths, edges[-1])]
    points, inverse = np.unique(outcomes.intent, return_inverse=True)
    expected_by = np.bincount(inverse, weights=expected, minlength=len(points))
    bought_by = np.bincount(inverse[outcomes.purchase_cases], minlength=len(points)).astype(
        np.float64
    )
    keep = expected_by > 0
    points, expected_by, bought_by = points[keep], expected_by[keep], bought_by[keep]
    lift = isotonic_regression(bought_by / expected_by, weights=expected_by).x
    changes = np.flatnonzero(np.diff(lift)) if len(lift) > 1 else np.zeros(0, dtype=np.int64)
    ends = np.unique(np.concatenate([[0, len(lift) - 1], changes, changes + 1]))
    return tuple(float(p) for p in points[ends]), tuple(float(v) for v in lift[ends])


def _shown_rates(rates: list[float], edges: tuple[int, ...]) -> FloatArray:
    """The bucket rates spread over every position up to the depth."""
    return np.repeat(np.asarray(rates), np.diff(np.asarray(edges)))


def _padded(rates: tuple[float, ...]) -> FloatArray:
    """Bucket rates and a 0 after them, which every rank past the depth looks up."""
    return np.append(np.asarray(rates, dtype=np.float64), 0.0)
