"""A new model version serves on probation until its online metric has been compared.

After a swap, the next ``events`` prequential checks of lists that the new
version produced are counted; their HR@10 is compared with what the previous
version reached over its last window (:func:`guard`).
A version that falls more than ``max_drop`` below is rejected, and the caller
swaps back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from online_learning.announcement import finite_number


@dataclass(frozen=True)
class Verdict:
    """Outcome of :func:`guard`: whether the version may serve, and why."""

    accepted: bool
    reason: str


def guard(
    metrics: Mapping[str, float],
    baseline_metrics: Mapping[str, float],
    *,
    max_drop: float,
    keys: Sequence[str] | None = None,
) -> Verdict:
    """Accept a version unless an online metric fell more than ``max_drop`` below the baseline.

    Metrics are higher-is-better and compared in their own units (percent for
    ``RankingMetrics``). A key without a finite baseline is not compared; a key
    the candidate lacks, or a non-finite candidate value, rejects it.

    Args:
        metrics: the candidate's online metrics.
        baseline_metrics: those of the version serving now, over the same events.
        max_drop: largest tolerated drop, >= 0.
        keys: the metrics that count (default: every key of the baseline).

    Returns:
        The verdict; when rejected, its reason names the first failing metric.

    Raises:
        ValueError: ``max_drop`` is negative or not finite.

    Examples:
        >>> guard({"MRR@20": 17.5}, {"MRR@20": 18.0}, max_drop=1.0).accepted
        True
        >>> guard({"MRR@20": 16.0}, {"MRR@20": 18.0}, max_drop=1.0).reason
        'MRR@20 fell from 18 to 16 (more than 1)'
    """
    if not (finite_number(max_drop) and max_drop >= 0):
        raise ValueError(f"max_drop must be a finite number >= 0, got {max_drop!r}")
    for key in baseline_metrics if keys is None else keys:
        baseline = baseline_metrics.get(key)
        if baseline is None or not finite_number(baseline):
            continue
        value = metrics.get(key)
        if value is None or not finite_number(value):
            return Verdict(False, f"{key} is missing or not a finite number")
        if baseline - value > max_drop:
            drop = f"{key} fell from {baseline:g} to {value:g}"
            return Verdict(False, f"{drop} (more than {max_drop:g})")
    return Verdict(True, "no guarded metric fell more than the allowed drop")


@dataclass
class _Trial:
    version: str
    baseline_hr: float
    hits: float = 0.0
    events: int = 0


class Probation:
    """Judges one version at a time by its first ``events`` online hits.

    Examples:
        >>> probation = Probation(events=4, max_drop=0.1)
        >>> probation.start("v2", baseline_hr=0.5)
        >>> [probation.observe("v2", hit) for hit in (0.0, 0.0, 1.0)]
        [None, None, None]
        >>> probation.observe("v2", 0.0).reason
        'HR@10 fell from 0.5 to 0.25 (more than 0.1)'
    """

    def __init__(self, *, events: int = 500, max_drop: float = 0.05) -> None:
        if events < 1 or not 0 <= max_drop <= 1:
            raise ValueError("events must be >= 1 and max_drop in [0, 1]")
        self._events = events
        self._max_drop = max_drop
        self._trial: _Trial | None = None

    @property
    def version(self) -> str | None:
        """The version on trial, if any."""
        return self._trial.version if self._trial else None

    def start(self, version: str, *, baseline_hr: float) -> None:
        """Put ``version`` on trial against the previous version's window HR@10."""
        self._trial = _Trial(version, baseline_hr)

    def observe(self, version: str, hit: float) -> Verdict | None:
        """Count one check of a list ``version`` produced; the verdict once decided."""
        trial = self._trial
        if trial is None or version != trial.version:
            return None
        trial.hits += hit
        trial.events += 1
        if trial.events < self._events:
            return None
        self._trial = None
        return guard(
            {"HR@10": trial.hits / trial.events},
            {"HR@10": trial.baseline_hr},
            max_drop=self._max_drop,
        )
