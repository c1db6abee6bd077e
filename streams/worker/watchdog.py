"""Ends a worker whose fetch loop has stopped turning, so that its orchestrator restarts it.

Why: a stuck worker keeps its partitions, so the group never gives them to a
live one and their events wait for good. Twice on a fresh Apache Kafka a worker
reported ready and then never consumed, with nothing in its log
(docs/reliability.md). A healthy fetch loop returns at least once a second,
busy or idle; offsets are committed only after delivery, so ending the process
loses nothing. The check runs on its own thread, so a blocked event loop is
caught too. A rebalance may take longer but not for ever: one was seen never
to finish on a fresh broker, so it gets :data:`RECOVERY_FACTOR` times the
limit. A table recovery makes progress with each changelog record it receives
(``streams.worker.process.fetch_progress``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

#: Exit status of a worker ended by the watchdog (``EX_TEMPFAIL``: try again).
EXIT_STALLED = 75
#: Seconds between two looks at the fetch loop.
CHECK_SECONDS = 1.0
#: How many times the limit a rebalance may last.
RECOVERY_FACTOR = 10


@dataclass
class StallClock:
    """How long the fetch loop has been still, and how long the worker has been rebalancing."""

    limit_seconds: float
    clock: Callable[[], float] = time.monotonic
    #: When the loop was last seen turning, or last had a reason not to (rebalancing).
    _excused_at: float = field(init=False)
    #: When the current rebalance or recovery began; None while fetching.
    _paused_at: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self._excused_at = self.clock()

    def stalled(self, *, last_fetch: float | None, fetching: bool) -> float | None:
        """Seconds stuck, once past the limit that applies; else None.

        Args:
            last_fetch: ``clock()`` when the fetch loop last returned, None if never.
            fetching: whether it should be turning now (flow active, not rebalancing).
        """
        now = self.clock()
        if not fetching:
            self._excused_at = now
            if self._paused_at is None:
                self._paused_at = now
            paused = now - self._paused_at
            return paused if paused > self.limit_seconds * RECOVERY_FACTOR else None
        self._paused_at = None
        still = now - max(self._excused_at, last_fetch if last_fetch is not None else -1.0)
        return still if still > self.limit_seconds else None


def watch(
    probe: Callable[[], tuple[float | None, bool]],
    limit_seconds: float,
    *,
    on_stall: Callable[[float], None] | None = None,
) -> threading.Thread:
    """Start a daemon thread that calls ``on_stall`` (default: exit) once the loop is stuck.

    Args:
        probe: returns (last fetch time on ``time.monotonic``, should be fetching now).
        limit_seconds: how long the loop may be still.
        on_stall: called with the seconds stalled; the default logs and ends the
            process with :data:`EXIT_STALLED`.
    """
    clock = StallClock(limit_seconds)
    act = on_stall or _exit_stalled

    def run() -> None:
        while True:
            time.sleep(CHECK_SECONDS)
            last_fetch, fetching = probe()
            still = clock.stalled(last_fetch=last_fetch, fetching=fetching)
            if still is not None:
                act(still)
                return

    thread = threading.Thread(target=run, name="intentstream-watchdog", daemon=True)
    thread.start()
    return thread


def _exit_stalled(still: float) -> None:
    log.critical(
        "fetch loop stuck (or a table recovery receiving nothing) for %.0f s: ending the worker "
        "(exit %d) so that it is restarted; "
        "uncommitted events are fetched again",
        still,
        EXIT_STALLED,
    )
    logging.shutdown()
    os._exit(EXIT_STALLED)
