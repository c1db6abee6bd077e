"""When each recently erased user was erased, so the learner never learns their older events.

An erasure request and the user's events travel on different topics, so the
learner can read an event after the request that follows it (lag, a restart that
re-reads events). It keeps, per user pseudonym, the record timestamp of their
latest erasure and drops every event of theirs at or before it.
"""

from __future__ import annotations

from collections import OrderedDict

#: Erased users remembered; past it the least recently erased are forgotten (~200 bytes each).
MAX_ERASED = 100_000


class ErasedUsers:
    """The latest erasure time per user pseudonym, for the most recently erased users.

    Examples:
        >>> erased = ErasedUsers()
        >>> erased.erase("p1", at=100.0)
        >>> erased.covers("p1", 99.5), erased.covers("p1", 100.0), erased.covers("p1", 100.5)
        (True, True, False)
        >>> erased.covers("p2", 1.0)
        False
    """

    def __init__(self, *, capacity: int = MAX_ERASED) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self._capacity = capacity
        self._at: OrderedDict[str, float] = OrderedDict()

    def erase(self, user: str, *, at: float) -> None:
        """Record that ``user``'s events up to record time ``at`` (seconds) are erased."""
        self._at[user] = max(at, self._at.pop(user, at))
        if len(self._at) > self._capacity:
            self._at.popitem(last=False)

    def covers(self, user: str, at: float) -> bool:
        """Whether an event of ``user`` with record time ``at`` was erased."""
        erased = self._at.get(user)
        return erased is not None and at <= erased

    def __len__(self) -> int:
        return len(self._at)
