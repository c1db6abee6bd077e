"""The event time every active input partition has reached: what closes a privacy window.

A worker reads several partitions, and their event times drift apart (a fetch holds a
run of records of each; one partition may lag behind another). Closing a window as
soon as one partition's events pass its end would drop every later event of the other
partitions for that window (a released window takes nothing more). So windows close at
the watermark, the least event time over the partitions still delivering; a
partition with no event for ``idle_seconds`` of wall-clock time stops holding it back.
"""

from __future__ import annotations


class Watermark:
    """Per-partition event-time high-water marks and their minimum over active partitions.

    Examples:
        >>> mark = Watermark(idle_seconds=30.0)
        >>> mark.observe(0, 100.0, wall=0.0), mark.observe(1, 50.0, wall=0.0)
        (100.0, 50.0)
        >>> mark.observe(0, 120.0, wall=10.0)  # partition 1 still at 50
        50.0
        >>> mark.observe(0, 130.0, wall=45.0)  # partition 1 silent for 45 s: idle
        130.0
    """

    def __init__(self, *, idle_seconds: float) -> None:
        if not idle_seconds > 0:
            raise ValueError("idle_seconds must be > 0")
        self._idle = idle_seconds
        self._times: dict[int, float] = {}
        self._seen: dict[int, float] = {}
        self._wall = float("nan")
        self._mark = float("-inf")

    def observe(self, partition: int, event_time: float, *, wall: float) -> float:
        """Note an event of ``partition`` at ``event_time``; the watermark after it.

        The minimum is recomputed only when it can have changed: a new wall time (a
        new batch: partitions may have gone idle), a partition (re)joining, or the
        partition that held the watermark moving on.
        """
        previous = self._times.get(partition)
        was_active = previous is not None and wall - self._seen[partition] <= self._idle
        if previous is None or event_time > previous:
            self._times[partition] = event_time
        self._seen[partition] = wall
        if wall != self._wall or not was_active or previous == self._mark:
            self._wall = wall
            self._mark = min(
                t for p, t in self._times.items() if wall - self._seen[p] <= self._idle
            )
        return self._mark
