"""Each user's latest recommendation list, in memory, under their pseudonym.

The batch handler writes a batch's lists (``BatchResult.latest``) before its
delivery; an erasure in the batch removes the user's list in the same step, and
a partition given away takes its users' lists with it. The body kept is the
recommendation without ``user_id``: nothing here holds a raw user id.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping


class LatestLists:
    """At most ``capacity`` users' latest list bodies, the least recently answered dropped first.

    Examples:
        >>> lists = LatestLists(capacity=2)
        >>> lists.update({b"p1": (0, b"{1}"), b"p2": (1, b"{2}"), b"p3": (1, b"{3}")})
        >>> lists.get(b"p1") is None, lists.get(b"p3")
        (True, b'{3}')
        >>> lists.drop_partitions({1}); len(lists)
        0
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self._capacity = capacity
        self._lists: OrderedDict[bytes, tuple[int, bytes]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._lists)

    def get(self, pseudonym: bytes) -> bytes | None:
        """The user's latest list body, or None."""
        entry = self._lists.get(pseudonym)
        return None if entry is None else entry[1]

    def update(self, changes: Mapping[bytes, tuple[int, bytes | None]]) -> None:
        """Apply a batch's lists: ``pseudonym -> (partition, body)``; a None body removes."""
        lists = self._lists
        for pseudonym, (partition, body) in changes.items():
            if body is None:
                lists.pop(pseudonym, None)
                continue
            lists[pseudonym] = (partition, body)
            lists.move_to_end(pseudonym)
        while len(lists) > self._capacity:
            lists.popitem(last=False)

    def discard(self, pseudonyms: Iterable[bytes]) -> None:
        """Forget these users' lists (their state expired)."""
        for pseudonym in pseudonyms:
            self._lists.pop(pseudonym, None)

    def drop_partitions(self, partitions: set[int]) -> None:
        """Forget the lists of users on ``partitions`` (given away: their lists would go stale)."""
        if not partitions:
            return
        gone = [p for p, (partition, _) in self._lists.items() if partition in partitions]
        for pseudonym in gone:
            del self._lists[pseudonym]
