"""Differential privacy of the shared counts: per-user budgets, bounded contributions, releases.

Every value derived from many users' events that leaves a worker goes through here:
each user adds at most ``max_items`` distinct items per window
(:class:`ContributionBound`, charged once per window against the user's
:class:`PrivacyBudget`) and :class:`ThresholdCounts` releases a window's counts once,
with Laplace noise of scale ``max_keys / epsilon`` and a threshold for the keys' own
privacy (delta). docs/privacy.md states what this covers.

Noise comes from OpenDP's vetted samplers only, never from numpy. OpenDP draws
from the operating system's CSPRNG, which cannot be seeded: releases are not
reproducible, on purpose.

Accounting is exact. Epsilons are charged in integer micro-epsilons
(:data:`MICRO`), rounded up, and each mechanism's scale is chosen so that
OpenDP's own privacy map certifies a loss no larger than the charge, so rounding
can never push a user past the budget.

Windows are tumbling and aligned to multiples of ``window_seconds`` of event
time, so budgets, contribution bounds and popularity-count windows share their
boundaries. The guarantee is epsilon *per window*: a user may spend a whole
budget at the end of one window and again at the start of the next.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction

import opendp.prelude as dp

from streams.errors import PrivacyError

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
    _check_positive("epsilon", epsilon)
    return _micro_units(float(epsilon), math.ceil)


@functools.lru_cache(maxsize=256)
def _micro_units(epsilon: float, rounding: Callable[[Decimal], int]) -> int:
    """``epsilon`` in micro-epsilons, rounded by ``rounding``; cached: every event charges one."""
    return rounding(Decimal(repr(epsilon)) * MICRO)


@dataclass(slots=True)
class PrivacyBudget:
    """One user's epsilon budget per tumbling window of event time.

    ``limit_epsilon`` and ``window_seconds`` are configuration, passed in by the
    caller; only ``window_start`` and ``spent_units`` are state (:meth:`to_list`).

    Attributes:
        limit_epsilon: most epsilon spent per window, >= 1e-6 (floored to units).
        window_seconds: window length in seconds, > 0.
        window_start: start of the current window, a multiple of ``window_seconds``.
        spent_units: micro-epsilons spent in the current window.

    Examples:
        >>> budget = PrivacyBudget(limit_epsilon=1.0, window_seconds=3600.0)
        >>> [budget.try_spend(0.4, now=10.0) for _ in range(3)]
        [True, True, False]
        >>> budget.try_spend(0.4, now=3700.0), budget.to_list()
        (True, [3600.0, 400000])
    """

    limit_epsilon: float
    window_seconds: float
    window_start: float = 0.0
    spent_units: int = 0
    limit_units: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        _check_positive("window_seconds", self.window_seconds)
        _check_positive("limit_epsilon", self.limit_epsilon)
        self.limit_units = _micro_units(float(self.limit_epsilon), math.floor)
        if self.limit_units < 1:
            raise ValueError(f"limit_epsilon must be >= {1 / MICRO}, got {self.limit_epsilon}")
        _check_finite("window_start", self.window_start)
        _check_count("spent_units", self.spent_units, minimum=0)

    def try_spend(self, epsilon: float, *, now: float) -> bool:
        """Spend ``epsilon`` at event time ``now`` if the window's budget allows it.

        A ``now`` past the current window starts a new one; an earlier ``now``
        (late event) is charged to the current window. A refused spend changes
        nothing.

        Args:
            epsilon: privacy loss to charge, > 0 (rounded up to micro-epsilons).
            now: event time in seconds.

        Returns:
            True when charged; False when it would exceed ``limit_epsilon``.

        Raises:
            ValueError: ``epsilon`` is not finite and > 0, or ``now`` is not finite.
        """
        units = epsilon_units(epsilon)
        start = _window_of(now, self.window_seconds)
        spent = self.spent_units if start <= self.window_start else 0
        if spent + units > self.limit_units:
            return False
        self.window_start = max(start, self.window_start)
        self.spent_units = spent + units
        return True

    def to_list(self) -> list[float | int]:
        """State as ``[window_start, spent_units]``, for the user's orjson state."""
        return [self.window_start, self.spent_units]

    @classmethod
    def from_list(
        cls, state: Sequence[float | int], *, limit_epsilon: float, window_seconds: float
    ) -> PrivacyBudget:
        """Inverse of :meth:`to_list`, with the current configuration.

        Raises:
            ValueError: ``state`` is malformed or the configuration invalid.
        """
        if len(state) != 2:
            raise ValueError(f"privacy budget state needs 2 numbers, got {len(state)}")
        start, spent = state
        if not isinstance(spent, int):
            raise ValueError(f"spent_units must be an int, got {spent!r}")
        return cls(limit_epsilon, window_seconds, float(start), spent)


@dataclass(slots=True)
class ContributionBound:
    """Distinct items one user adds to shared popularity counts per window.

    Bounding every user to ``max_items`` distinct items (+1 each) per window makes
    the L1 sensitivity of a window's count vector ``max_items``. The first item
    of each window charges the user's budget the epsilon at which that window's
    counts are released (:meth:`ThresholdCounts.release`, exactly once).

    Attributes:
        max_items: most distinct items per window, >= 1.
        window_seconds: window length in seconds; same as the counts' windows.
        window_start: start of the current window (state).
        items: items already counted in the current window (state).

    Examples:
        >>> budget = PrivacyBudget(limit_epsilon=1.0, window_seconds=60.0)
        >>> bound = ContributionBound(max_items=2, window_seconds=60.0)
        >>> [bound.admit(i, now=5.0, budget=budget, epsilon=0.5) for i in "aabc"]
        [True, False, True, False]
        >>> budget.spent_units
        500000
    """

    max_items: int
    window_seconds: float
    window_start: float = 0.0
    items: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        _check_count("max_items", self.max_items)
        _check_positive("window_seconds", self.window_seconds)
        _check_finite("window_start", self.window_start)

    def admit(self, item: str, *, now: float, budget: PrivacyBudget, epsilon: float) -> bool:
        """Whether ``item`` may be added (+1) to the counts of window ``window_start``.

        Add an admitted item to the counts of ``self.window_start`` after the
        call, not of ``now``: a late event is counted in the current window.

        Args:
            item: the item id.
            now: event time in seconds.
            budget: the same user's budget, charged on the window's first item.
            epsilon: the epsilon of the popularity-count release, > 0.

        Returns:
            False for a repeat, a full window or a refused budget; else True.
        """
        start = _window_of(now, self.window_seconds)
        items = self.items if start <= self.window_start else []
        if item in items or len(items) >= self.max_items:
            return False
        if not items and not budget.try_spend(epsilon, now=now):
            return False
        items.append(item)
        self.window_start, self.items = max(start, self.window_start), items
        return True

    def to_list(self) -> list[float | list[str]]:
        """State as ``[window_start, items]``, for the user's orjson state."""
        return [self.window_start, list(self.items)]

    @classmethod
    def from_list(
        cls, state: Sequence[float | list[str]], *, max_items: int, window_seconds: float
    ) -> ContributionBound:
        """Inverse of :meth:`to_list`, with the current configuration.

        Raises:
            ValueError: ``state`` is malformed or the configuration invalid.
        """
        if len(state) != 2:
            raise ValueError(f"contribution state needs 2 entries, got {len(state)}")
        start, items = state
        if isinstance(start, list) or not isinstance(items, list):
            raise ValueError("contribution state must be [window_start, items]")
        return cls(max_items, window_seconds, float(start), [str(item) for item in items])


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
        _check_count("max_keys", max_keys)
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
            PrivacyError: the counts were already released.
            ValueError: ``epsilon`` or ``delta`` out of range.
        """
        if self._released:
            raise PrivacyError("a window's counts may be released only once")
        _check_positive("epsilon", epsilon)
        if not 0.0 < delta < 1.0:
            raise ValueError(f"delta must be in (0, 1), got {delta!r}")
        self._released = True
        if not self._counts:
            return {}
        measurement = _threshold_mechanism(self.max_keys, epsilon, delta)
        return {key: int(count) for key, count in measurement(self._counts).items()}


@functools.lru_cache(maxsize=64)
def _threshold_mechanism(max_keys: int, epsilon: float, delta: float) -> dp.Measurement:
    """The cheapest threshold certifying (epsilon, delta) at scale ``max_keys / epsilon``."""
    dp.enable_features("contrib")
    space = (
        dp.map_domain(dp.atom_domain(T=str), dp.atom_domain(T="i64")),
        dp.l01inf_distance(dp.absolute_distance(T="i64")),
    )
    target, d_in = _loss_target(epsilon), (max_keys, max_keys, 1)
    scale = max_keys / epsilon
    for attempt in range(64):
        # The smallest threshold whose delta fits, by OpenDP's own binary search.
        threshold = dp.binary_search(
            lambda t, scale=scale: (
                dp.m.make_laplace_threshold(*space, scale=scale, threshold=t).map(d_in)[1] <= delta
            ),
            bounds=(1, 1 << 30),
            T=int,
        )
        measurement = dp.m.make_laplace_threshold(*space, scale=scale, threshold=threshold)
        if measurement.map(d_in)[0] <= target:
            return measurement
        scale += scale * 2.0 ** (attempt - 52)
    raise ValueError(f"no threshold mechanism certifies epsilon={epsilon}, delta={delta}")


def _loss_target(epsilon: float) -> float:
    """The largest float <= both ``epsilon`` and its charge (exact arithmetic)."""
    charge = Fraction(epsilon_units(epsilon), MICRO)  # validates epsilon first
    exact = min(Fraction(epsilon), charge)
    target = float(exact)
    return math.nextafter(target, 0.0) if Fraction(target) > exact else target


def _window_of(now: float, window_seconds: float) -> float:
    """Start of the aligned window holding event time ``now``."""
    _check_finite("now", now)
    return math.floor(now / window_seconds) * window_seconds


def _check_finite(name: str, value: float) -> None:
    if type(value) is float and math.isfinite(value):
        return  # the common case, checked first: several checks run per event
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")


def _check_positive(name: str, value: float) -> None:
    _check_finite(name, value)
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")


def _check_count(name: str, value: int, *, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
