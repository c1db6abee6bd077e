"""The watchdog ends a worker whose fetch loop is still, and only then."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest

from streams.worker import watchdog
from streams.worker.process import fetch_progress
from streams.worker.watchdog import StallClock, watch


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_loop_that_keeps_fetching_is_never_stalled() -> None:
    clock = Clock()
    stall = StallClock(10.0, clock=clock)
    for _ in range(100):
        clock.now += 1.0
        assert stall.stalled(last_fetch=clock.now - 0.5, fetching=True) is None


def test_a_still_loop_is_stalled_once_past_the_limit() -> None:
    clock = Clock()
    stall = StallClock(10.0, clock=clock)
    last = clock.now
    clock.now += 9.0
    assert stall.stalled(last_fetch=last, fetching=True) is None
    clock.now += 2.0
    assert stall.stalled(last_fetch=last, fetching=True) == pytest.approx(11.0)


def test_rebalancing_time_does_not_count_and_a_loop_that_never_fetched_does() -> None:
    clock = Clock()
    stall = StallClock(10.0, clock=clock)
    assert stall.stalled(last_fetch=None, fetching=False) is None
    clock.now += 90.0  # a long rebalance or table recovery
    assert stall.stalled(last_fetch=None, fetching=False) is None
    clock.now += 5.0
    assert stall.stalled(last_fetch=None, fetching=True) is None
    clock.now += 6.0  # 11 s of should-be-fetching with no fetch at all
    assert stall.stalled(last_fetch=None, fetching=True) == pytest.approx(11.0)


def test_the_thread_acts_once_on_a_stuck_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watchdog, "CHECK_SECONDS", 0.01)
    acted: list[float] = []
    done = threading.Event()

    def on_stall(still: float) -> None:
        acted.append(still)
        done.set()

    thread = watch(lambda: (None, True), 0.05, on_stall=on_stall)
    assert done.wait(timeout=5.0)
    thread.join(timeout=5.0)
    assert not thread.is_alive() and len(acted) == 1 and acted[0] > 0.05


def test_a_rebalance_or_recovery_that_never_ends_is_a_stall_too() -> None:
    clock = Clock()
    stall = StallClock(10.0, clock=clock)
    assert stall.stalled(last_fetch=None, fetching=False) is None
    clock.now += 10.0 * watchdog.RECOVERY_FACTOR - 1.0
    assert stall.stalled(last_fetch=None, fetching=False) is None
    clock.now += 2.0
    assert stall.stalled(last_fetch=None, fetching=False) == pytest.approx(101.0)


def _app(*, in_recovery: bool, received: dict[str, float], started: float) -> Any:
    """The parts of a Faust app the watchdog's probe reads."""
    recovery = SimpleNamespace(
        in_recovery=in_recovery,
        _active_events_received_at=received,
        _recovery_started_at=started,
    )
    consumer = SimpleNamespace(flow_active=True, last_fetch=560.5)  # turning
    return SimpleNamespace(
        tables=SimpleNamespace(recovery=recovery), consumer=consumer, rebalancing=False
    )


def test_a_table_recovery_that_receives_nothing_stalls_though_the_fetch_loop_turns() -> None:
    """The recovery stall of docs/reliability.md: the loop came back just now, but no
    changelog record arrived since the recovery began 61 s ago."""
    clock = Clock()
    clock.now = 561.0
    stall = StallClock(60.0, clock=clock)
    stall._excused_at = 400.0  # the rebalance before the recovery
    last, fetching = fetch_progress(_app(in_recovery=True, received={}, started=500.0))
    assert stall.stalled(last_fetch=last, fetching=fetching) == pytest.approx(61.0)
    moving = _app(in_recovery=True, received={"user_state-changelog-0": 560.0}, started=500.0)
    last, fetching = fetch_progress(moving)
    assert stall.stalled(last_fetch=last, fetching=fetching) is None
    last, fetching = fetch_progress(_app(in_recovery=False, received={}, started=500.0))
    assert (last, fetching) == (560.5, True)  # out of recovery: the fetch loop counts
