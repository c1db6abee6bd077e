"""How much epsilon a DP learner's lineage may gain per window of wall-clock time.

The lifetime cap (``OnlinePrivacy.epsilon_budget``) bounds the whole spend; this
spreads it, so that a burst of traffic cannot spend in an hour what was meant to last
weeks. Windows are aligned on the epoch (window n covers ``[n * seconds, (n + 1) *
seconds)``), so a restarted learner that restores the state finds the same window.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SpendWindows:
    """Allows a step while the lineage's epsilon grew by at most ``epsilon`` this window.

    The spend of a window is the growth of the lineage's epsilon (composed over its
    whole history) since the window began, so the windows' spends add up to the
    lifetime epsilon and a cap of E lasts at least E / ``epsilon`` windows.

    Attributes:
        epsilon: most growth of the lineage's epsilon per window.
        seconds: length of a window.
        clock: seconds since the epoch (injected for tests).
        index: the window the state is about (-1: none yet).
        start: the lineage's epsilon when window ``index`` began.

    Examples:
        >>> now = [0.0]
        >>> windows = SpendWindows(epsilon=1.0, seconds=60, clock=lambda: now[0])
        >>> windows.allows(spent=0.0, after=0.8), windows.allows(spent=0.8, after=1.2)
        (True, False)
        >>> now[0] = 61.0
        >>> windows.allows(spent=0.8, after=1.2), windows.state()["index"]
        (True, 1)
    """

    epsilon: float
    seconds: float
    clock: Callable[[], float] = field(default=time.time, repr=False)
    index: int = -1
    start: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.epsilon < math.inf or not 0 < self.seconds < math.inf:
            raise ValueError("epsilon and seconds must be finite and > 0")

    def allows(self, *, spent: float, after: float) -> bool:
        """Whether a step taking the lineage's epsilon from ``spent`` to ``after`` fits now."""
        index = int(self.clock() // self.seconds)
        if index != self.index:
            self.index, self.start = index, spent
        return after - self.start <= self.epsilon

    def state(self) -> dict[str, Any]:
        """What a published version records, for a restart within the same window."""
        return {
            "epsilon": self.epsilon,
            "seconds": self.seconds,
            "index": self.index,
            "start": self.start,
        }
