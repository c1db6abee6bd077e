"""The sessions a DP learner samples its steps from: each one's latest prefix, for a while.

Under DP-SGD each step is a Poisson sample of the pool (``model.training.update``). A
session enters (or stays in) the pool with its latest prefix whenever it grows, and
leaves ``lifetime`` updates after that. Membership depends on the session's own
events and the update schedule only, never on other sessions: no session can push
another out, which the add-or-remove-one-session analysis needs (docs/privacy.md).
"""

from __future__ import annotations

from collections.abc import Collection


class SessionPool:
    """One row per session key: its owner, its latest prefix, and the update it arrived at.

    Args:
        lifetime: updates a session stays after its latest prefix (1: only until the
            next update).

    Examples:
        >>> pool = SessionPool(lifetime=2)
        >>> pool.add("s1", [1, 2], owner="u1"); pool.add("s1", [1, 2, 3], owner="u1")
        >>> pool.add("s2", [4, 5], owner="u2")
        >>> pool.rows(), pool.new
        ([[1, 2, 3], [4, 5]], 2)
        >>> pool.age(); pool.add("s2", [4, 5, 6], owner="u2"); pool.age()
        >>> pool.rows(), pool.forget({"u2"}), len(pool)
        ([[4, 5, 6]], 1, 0)
    """

    def __init__(self, *, lifetime: int) -> None:
        if lifetime < 1:
            raise ValueError(f"lifetime must be >= 1, got {lifetime}")
        self._lifetime = lifetime
        self._update = 0
        self._rows: dict[str, tuple[str | None, list[int], int]] = {}
        #: Sessions with a new prefix since the last update (what schedules the next one).
        self.new = 0

    def add(self, key: str, sequence: list[int], *, owner: str | None) -> None:
        """Make ``sequence`` the session's row (a longer prefix replaces a shorter one)."""
        previous = self._rows.pop(key, None)  # re-inserted last: the dict stays in arrival order
        if previous is None or previous[2] != self._update:
            self.new += 1
        self._rows[key] = (owner, sequence, self._update)

    def rows(self) -> list[list[int]]:
        """The row of every session present, one each."""
        return [sequence for _, sequence, _ in self._rows.values()]

    def age(self) -> None:
        """Close an update: sessions whose latest prefix is ``lifetime`` updates old leave."""
        self._update += 1
        self.new = 0
        oldest = self._update - self._lifetime
        self._rows = {k: row for k, row in self._rows.items() if row[2] > oldest}

    def forget(self, owners: Collection[str]) -> int:
        """Drop the sessions of ``owners``; returns how many."""
        before = len(self._rows)
        self._rows = {k: row for k, row in self._rows.items() if row[0] not in owners}
        return before - len(self._rows)

    def __len__(self) -> int:
        return len(self._rows)
