"""A new model version serves on probation until its online metric has been compared.

After a swap, the next ``events`` prequential checks of lists that the new
version produced are counted; their HR@10 is compared with what the previous
version reached over its last window (:func:`online_learning.registry.guard`).
A version that falls more than ``max_drop`` below is rejected, and the caller
swaps back.
"""

from __future__ import annotations

from dataclasses import dataclass

from online_learning.registry import Verdict, guard


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
