"""OpenDP's Laplace threshold release of counts over keys nobody lists in advance, and
its Laplace release of counts over a public domain.

Shared by the stream's DP shared counts (``streams/pipeline/dp.py``) and the DP
selection of a trained model's vocabulary (``model/training/vocabulary.py``): both
release, once, which keys many contributors hold and how many, each contributor
adding +1 to a bounded number of distinct keys.

Noise comes from OpenDP's vetted samplers only, never from numpy. OpenDP draws
from the operating system's CSPRNG, which cannot be seeded: releases are not
reproducible, on purpose.

Accounting is exact. Epsilons are charged in integer micro-epsilons
(:data:`MICRO`), rounded up, and each mechanism's scale is chosen so that
OpenDP's own privacy map certifies a loss no larger than the charge, so rounding
can never push a contributor past a budget.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt
import opendp.prelude as dp

IntArray = npt.NDArray[np.int64]


class ReleasedTwice(RuntimeError):
    """A set of counts was asked to be released a second time (fresh noise would leak)."""


MICRO = 1_000_000
"""Accounting unit: budgets and spends are integers of 1e-6 epsilon."""


def epsilon_units(epsilon: float) -> int:
    """Micro-epsilons charged for a release at ``epsilon``, rounded up.

    The float's shortest decimal form is used, so ``0.1`` costs exactly 100,000.

    Args:
        epsilon: privacy loss of the release, > 0.

    Returns:
        The charge in units of :data:`MICRO`, at least 1.

    Raises:
        ValueError: ``epsilon`` is not a finite number > 0.

    Examples:
        >>> epsilon_units(0.1), epsilon_units(2.5), epsilon_units(1e-9)
        (100000, 2500000, 1)
    """
    check_positive("epsilon", epsilon)
    return micro_units(float(epsilon), math.ceil)


@functools.lru_cache(maxsize=256)
def micro_units(epsilon: float, rounding: Callable[[Decimal], int]) -> int:
    """``epsilon`` in micro-epsilons, rounded by ``rounding``; cached: every event charges one."""
    return rounding(Decimal(repr(epsilon)) * MICRO)


class ThresholdCounts:
    """One window's counts over keys nobody lists in advance, released once, (epsilon, delta)-DP.

    OpenDP's Laplace threshold mechanism (Rogers 2023): every count gets discrete
    Laplace noise of scale ``max_keys / epsilon`` and keys whose noisy count is
    below a threshold are dropped, so a key only one user holds comes out with
    probability at most ``delta``. Each contributor adds +1 to at most
    ``max_keys`` distinct keys per window (:class:`ContributionBound`).

    Args:
        max_keys: the most keys one contributor adds to (its L0 sensitivity).

    Examples:
        >>> counts = ThresholdCounts(max_keys=1)
        >>> for key in ["a"] * 40 + ["rare"]:
        ...     counts.add(key)
        >>> released = counts.release(epsilon=1.0, delta=1e-6)
        >>> "rare" in released, 20 < released["a"] < 60
        (False, True)
    """

    __slots__ = ("_counts", "_released", "max_keys")

    def __init__(self, *, max_keys: int) -> None:
        check_count("max_keys", max_keys)
        self.max_keys = max_keys
        self._counts: dict[str, int] = {}
        self._released = False

    def __len__(self) -> int:
        return len(self._counts)

    def add(self, key: str) -> None:
        """Count one admitted contribution to ``key``."""
        self._counts[key] = self._counts.get(key, 0) + 1

    def release(self, *, epsilon: float, delta: float) -> dict[str, int]:
        """Noisy counts of the keys that pass the threshold.

        Raises:
            ReleasedTwice: the counts were already released.
            ValueError: ``epsilon`` or ``delta`` out of range.
        """
        if self._released:
            raise ReleasedTwice("counts may be released only once")
        check_positive("epsilon", epsilon)
        if not 0.0 < delta < 1.0:
            raise ValueError(f"delta must be in (0, 1), got {delta!r}")
        self._released = True
        if not self._counts:
            return {}
        measurement = threshold_mechanism(self.max_keys, epsilon, delta)
        return {key: int(count) for key, count in measurement(self._counts).items()}


@functools.lru_cache(maxsize=64)
def threshold_mechanism(max_keys: int, epsilon: float, delta: float) -> dp.Measurement:
    """The cheapest threshold certifying (epsilon, delta) at scale ``max_keys / epsilon``."""
    dp.enable_features("contrib")
    space = (
        dp.map_domain(dp.atom_domain(T=str), dp.atom_domain(T="i64")),
        dp.l01inf_distance(dp.absolute_distance(T="i64")),
    )
    target, d_in = loss_target(epsilon), (max_keys, max_keys, 1)
    scale = max_keys / epsilon
    for attempt in range(64):
        threshold = _smallest_threshold(space, scale, d_in, delta)
        if _loss(space, scale, threshold, d_in)[0] <= target:
            return dp.m.make_laplace_threshold(*space, scale=scale, threshold=threshold)
        scale += scale * 2.0 ** (attempt - 52)
    raise ValueError(f"no threshold mechanism certifies epsilon={epsilon}, delta={delta}")


def _smallest_threshold(
    space: tuple[Any, Any], scale: float, d_in: tuple[int, int, int], delta: float
) -> int:
    """The smallest threshold whose delta fits at ``scale``, by OpenDP's own binary search."""

    def delta_fits(threshold: float) -> bool:
        return _loss(space, scale, int(threshold), d_in)[1] <= delta

    return int(dp.binary_search(delta_fits, bounds=(1, 1 << 30), T=int))


def _loss(
    space: tuple[Any, Any], scale: float, threshold: int, d_in: tuple[int, int, int]
) -> tuple[float, float]:
    """OpenDP's certified (epsilon, delta) of the threshold mechanism at these parameters."""
    measurement = dp.m.make_laplace_threshold(*space, scale=scale, threshold=threshold)
    epsilon, delta = measurement.map(d_in)  # type: ignore[no-untyped-call]
    return float(epsilon), float(delta)


def loss_target(epsilon: float) -> float:
    """The largest float <= both ``epsilon`` and its charge (exact arithmetic)."""
    charge = Fraction(epsilon_units(epsilon), MICRO)  # validates epsilon first
    exact = min(Fraction(epsilon), charge)
    target = float(exact)
    return math.nextafter(target, 0.0) if Fraction(target) > exact else target


def check_finite(name: str, value: float) -> None:
    if type(value) is float and math.isfinite(value):
        return  # the common case, checked first: several checks run per event
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")


def check_positive(name: str, value: float) -> None:
    check_finite(name, value)
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")


def check_count(name: str, value: int, *, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def split_epsilon(epsilon: float, share: Fraction) -> tuple[float, float]:
    """``epsilon`` cut into two floats, the first about ``share`` of it, that sum to at most it.

    Two mechanisms on one release, certified at these parts, compose to ``epsilon``.

    Examples:
        >>> first, second = split_epsilon(1.0, Fraction(3, 7))
        >>> round(first, 6), round(second, 6), Fraction(first) + Fraction(second) <= 1
        (0.428571, 0.571429, True)
    """
    check_positive("epsilon", epsilon)
    if not 0 < share < 1:
        raise ValueError(f"share must be in (0, 1), got {share}")
    total = Fraction(loss_target(epsilon))
    first = math.nextafter(float(total * share), 0.0)
    second = float(total - Fraction(first))
    if Fraction(first) + Fraction(second) > total:
        second = math.nextafter(second, 0.0)
    return first, second


def release_public_counts(counts: IntArray, *, max_keys: int, epsilon: float) -> IntArray:
    """Noisy counts of every key of a public domain: OpenDP's discrete Laplace, no threshold.

    The domain (say a shop's catalogue) is fixed without looking at the counts, so
    a key's presence reveals nothing and needs no threshold: every key is released,
    a count of 0 too, and a noisy count may be negative. Each contributor adds +1 to
    at most ``max_keys`` keys (its L1 sensitivity). OpenDP samples exactly, from the
    operating system's CSPRNG: about 12 us a key on one core.

    Args:
        counts: one count per key of the domain, in the domain's order.
        max_keys: the most keys one contributor adds to.
        epsilon: the release's privacy loss, certified by OpenDP's privacy map.
    """
    if counts.size == 0:
        return counts.astype(np.int64)
    noisy = public_mechanism(max_keys, epsilon)(np.ascontiguousarray(counts, dtype=np.int64))
    return np.asarray(noisy, dtype=np.int64)


@functools.lru_cache(maxsize=64)
def public_mechanism(max_keys: int, epsilon: float) -> dp.Measurement:
    """OpenDP's vector Laplace at the smallest scale it certifies ``epsilon`` for."""
    check_count("max_keys", max_keys)
    dp.enable_features("contrib")
    space = (dp.vector_domain(dp.atom_domain(T="i64")), dp.l1_distance(T="i64"))
    target, scale = loss_target(epsilon), max_keys / epsilon
    for attempt in range(64):
        measurement = dp.m.make_laplace(*space, scale=scale)
        if float(measurement.map(max_keys)) <= target:  # type: ignore[no-untyped-call]
            return measurement
        scale += scale * 2.0 ** (attempt - 52)
    raise ValueError(f"no Laplace mechanism certifies epsilon={epsilon}")


def release_sums(values: list[float], *, l1: float, epsilon: float) -> list[float]:
    """Noisy ``values`` from OpenDP's vector Laplace, epsilon-DP when one contributor
    moves them by at most ``l1`` in L1 norm.

    Examples:
        >>> noisy = release_sums([1000.0, 250.0], l1=2.0, epsilon=1.0)
        >>> all(abs(a - b) < 200 for a, b in zip(noisy, [1000.0, 250.0]))
        True
    """
    check_positive("epsilon", epsilon)
    check_positive("l1", l1)
    dp.enable_features("contrib")
    space = (dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.l1_distance(T=float))
    target, scale = loss_target(epsilon), l1 / epsilon
    for attempt in range(64):
        measurement = dp.m.make_laplace(*space, scale=scale)
        if float(measurement.map(l1)) <= target:  # type: ignore[no-untyped-call]
            return [float(v) for v in measurement([float(v) for v in values])]
        scale += scale * 2.0 ** (attempt - 52)
    raise ValueError(f"no Laplace mechanism certifies epsilon={epsilon}")
