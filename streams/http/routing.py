"""Which worker answers for a user: the owner of the user's partition of the events topic.

Producers key events by the raw user id, and the Java client's partitioner puts a
key on ``(murmur2(key) & 0x7fffffff) % partitions``; the worker assigned that
partition holds the user's state and latest list. Faust's partition assignor
carries each member's advertised URL (``canonical_url``) in the group's metadata
and hands every member the whole assignment, so each worker knows every owner.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aiokafka.partitioner import murmur2


def partition_of(user_id: str, partitions: int) -> int:
    """The partition the Java client's default partitioner gives the key ``user_id``.

    Not cached: a cache here would keep raw user ids in memory.

    Examples:
        >>> partition_of("21", 8), partition_of("u123", 8)
        (4, 7)
    """
    if partitions < 1:
        raise ValueError("partitions must be >= 1")
    hashed: int = murmur2(user_id.encode("utf-8"))
    return (hashed & 0x7FFFFFFF) % partitions


@dataclass(frozen=True)
class Routes:
    """The owner's URL of every partition of the events topic, and this worker's own URL."""

    owners: Mapping[int, str]
    own_url: str

    def owner(self, user_id: str) -> str:
        """The URL of the worker that owns ``user_id``'s partition."""
        return self.owners[partition_of(user_id, len(self.owners))]

    def is_own(self, url: str) -> bool:
        """Whether ``url`` is this worker's."""
        return url == self.own_url


def routes_from(
    distribution: Mapping[str, Mapping[str, Sequence[int]]],
    *,
    topic: str,
    partitions: int | None,
    own_url: str,
) -> Routes | None:
    """The routes of ``topic`` from the assignor's ``{url: {topic: [partition, ...]}}``.

    ``partitions`` is the topic's partition count when the consumer's metadata has
    it (only the group's leader may); else the partitions the distribution names,
    since Faust's assignor gives every partition of a subscribed topic an owner.
    None while the routes are incomplete: a partition has no owner or two (a
    rebalance is under way).

    Examples:
        >>> routes = routes_from(
        ...     {"http://a:1": {"ev": [0]}, "http://b:2": {"ev": [1], "other": [0]}},
        ...     topic="ev", partitions=2, own_url="http://a:1")
        >>> routes.owners == {0: "http://a:1", 1: "http://b:2"}
        True
        >>> routes_from({"http://a:1": {"ev": [0]}}, topic="ev", partitions=2, own_url="") is None
        True
        >>> routes_from({"http://a:1": {"ev": [1]}}, topic="ev", partitions=None, own_url="")
    """
    owners: dict[int, str] = {}
    for url, topics in distribution.items():
        for partition in topics.get(topic, ()):
            if partition in owners:
                return None
            owners[partition] = url
    if not owners or set(owners) != set(range(partitions or len(owners))):
        return None
    return Routes(owners=owners, own_url=own_url)
