"""Differential privacy of the shared counts: per-user budgets, bounded contributions, releases.

Every value derived from many users' events that leaves a worker goes through here:
each user adds at most ``max_items`` distinct items per window
(:class:`ContributionBound`, charged once per window against the user's
:class:`PrivacyBudget`) and :class:`ThresholdCounts` releases a window's counts once,
with Laplace noise of scale ``max_keys / epsilon`` and a threshold for the keys' own
privacy (delta). docs/privacy.md states what this covers.

The release itself, its noise and its exact accounting are :mod:`model.threshold`'s
(OpenDP), shared with the DP selection of a trained model's vocabulary.

Windows are tumbling and aligned to multiples of ``window_seconds`` of event
time, so budgets, contribution bounds and popularity-count windows share their
boundaries. The guarantee is epsilon *per window*: a user may spend a whole
budget at the end of one window and again at the start of the next.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from model.threshold import (
    MICRO,
    check_count,
    check_finite,
    check_positive,
    epsilon_units,
    micro_units,
)


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
        check_positive("window_seconds", self.window_seconds)
        check_positive("limit_epsilon", self.limit_epsilon)
        self.limit_units = micro_units(float(self.limit_epsilon), math.floor)
        if self.limit_units < 1:
            raise ValueError(f"limit_epsilon must be >= {1 / MICRO}, got {self.limit_epsilon}")
        check_finite("window_start", self.window_start)
        check_count("spent_units", self.spent_units, minimum=0)

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
        check_count("max_items", self.max_items)
        check_positive("window_seconds", self.window_seconds)
        check_finite("window_start", self.window_start)

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


def _window_of(now: float, window_seconds: float) -> float:
    """Start of the aligned window holding event time ``now``."""
    check_finite("now", now)
    return math.floor(now / window_seconds) * window_seconds
