"""The learner's sessions in memory: each one's recent item ids, and the user it belongs to.

Knowing the user of every session is what lets an erasure reach the learner: the
user's sessions go at once, whatever their session pseudonyms.
"""

from __future__ import annotations

from collections import OrderedDict


class SessionBuffer:
    """Recent items of the most recently active sessions, each tied to a user pseudonym.

    Args:
        capacity: most sessions kept; the least recently active goes first.
        max_len: most items kept per session (the newest).

    Examples:
        >>> buffer = SessionBuffer(capacity=2, max_len=3)
        >>> buffer.extend("s1", "a", user="u1"), buffer.extend("s1", "b", user="u1")
        (['a'], ['a', 'b'])
        >>> _ = buffer.extend("s2", "c", user="u2")
        >>> buffer.forget("u1"), buffer.items("s1"), len(buffer)
        (1, [], 1)
    """

    def __init__(self, *, capacity: int, max_len: int) -> None:
        if capacity < 1 or max_len < 1:
            raise ValueError("capacity and max_len must be >= 1")
        self._capacity = capacity
        self._max_len = max_len
        self._items: OrderedDict[str, list[str]] = OrderedDict()
        self._user_of: dict[str, str] = {}
        self._sessions_of: dict[str, set[str]] = {}

    def items(self, session: str) -> list[str]:
        """A copy of the session's recent items, oldest first (empty when unknown)."""
        return list(self._items.get(session, ()))

    def extend(self, session: str, item: str, *, user: str) -> list[str]:
        """Append ``item`` to ``session`` of ``user``; returns the session's items now.

        Raises:
            ValueError: ``session`` belongs to another user (session keys must be
                unique to their user, or erasing one user would miss the session).
        """
        if self._user_of.get(session, user) != user:
            raise ValueError("a session key must belong to one user")
        items = [*self._items.pop(session, []), item][-self._max_len :]
        self._items[session] = items
        self._user_of[session] = user
        self._sessions_of.setdefault(user, set()).add(session)
        if len(self._items) > self._capacity:
            oldest, _ = self._items.popitem(last=False)
            self._untie(oldest)
        return items

    def forget(self, user: str) -> int:
        """Drop every session of ``user``; returns how many there were."""
        sessions = self._sessions_of.pop(user, set())
        for session in sessions:
            del self._items[session]
            del self._user_of[session]
        return len(sessions)

    def _untie(self, session: str) -> None:
        user = self._user_of.pop(session)
        owned = self._sessions_of[user]
        owned.discard(session)
        if not owned:
            del self._sessions_of[user]

    def __len__(self) -> int:
        return len(self._items)
