"""The drift monitor fires on a change and stays quiet on a stationary stream.

Seeded Bernoulli loss streams (a miss = loss 1, as ``1 - hit@10``), so every
number here is deterministic. With ``delta=0.002`` and river 0.26.1 the
measured delay after a 0.3 -> 0.7 change is 55-87 events over these seeds;
ADWIN checks for a cut every 32 losses, so delays come in steps of 32.
"""

from __future__ import annotations

import logging
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from online_learning.drift import DriftMonitor

CHANGE = 5_000
#: Most events a 0.3 -> 0.7 change may go unnoticed (measured <= 87; ~2 ADWIN clock ticks slack).
MAX_DELAY = 150


def _losses(seed: int, n: int, before: float, after: float, *, change: int = CHANGE) -> list[float]:
    rng = random.Random(seed)
    return [float(rng.random() < (before if i < change else after)) for i in range(n)]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(("before", "after"), [(0.3, 0.7), (0.7, 0.3)])
def test_fires_soon_after_a_change_and_only_once(seed: int, before: float, after: float) -> None:
    monitor = DriftMonitor()
    fired = monitor.update_many(_losses(seed, 2 * CHANGE, before, after))
    detections = [i for i, flag in enumerate(fired) if flag]
    assert len(detections) == 1, detections
    assert 0 <= detections[0] - CHANGE <= MAX_DELAY
    assert monitor.n_detections == 1
    assert monitor.last_detection_index == detections[0] + 1
    assert abs(monitor.estimation - after) < 0.1


def test_stays_quiet_on_a_stationary_stream() -> None:
    monitor = DriftMonitor()
    assert not any(monitor.update_many(_losses(0, 100_000, 0.3, 0.3)))
    assert (monitor.n, monitor.n_detections, monitor.last_detection_index) == (100_000, 0, None)


def test_stays_quiet_on_a_stationary_continuous_loss() -> None:
    """Brier-style losses in [0, 1], not just 0/1 misses."""
    rng = random.Random(1)
    monitor = DriftMonitor()
    monitor.update_many([rng.random() ** 2 for _ in range(100_000)])
    assert monitor.n_detections == 0


def test_detection_time_and_log_line(caplog: pytest.LogCaptureFixture) -> None:
    losses = _losses(0, 2 * CHANGE, 0.3, 0.7)
    monitor = DriftMonitor()
    with caplog.at_level(logging.INFO, logger="online_learning.drift"):
        fired = monitor.update_many(losses, at=[1_000.0 + i for i in range(len(losses))])
    assert monitor.last_detection_at == 1_000.0 + fired.index(True)
    assert [record.getMessage().startswith("drift detected") for record in caplog.records] == [True]


@pytest.mark.parametrize("loss", [-0.1, 1.5, float("nan")])
def test_losses_outside_the_unit_interval_raise(loss: float) -> None:
    monitor = DriftMonitor()
    with pytest.raises(ValueError):
        monitor.update(loss)
    assert monitor.n == 0


@pytest.mark.parametrize("kwargs", [{"delta": 0.0}, {"delta": 1.0}, {"grace_period": 0}])
def test_parameters_are_validated(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        DriftMonitor(**kwargs)  # type: ignore[arg-type]


def test_times_must_match_losses() -> None:
    with pytest.raises(ValueError):
        DriftMonitor().update_many([0.0, 1.0], at=[1.0])


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 800), split=st.integers(0, 800))
def test_batched_equals_one_by_one(seed: int, n: int, split: int) -> None:
    losses = _losses(seed, n, 0.1, 0.9, change=n // 2)
    one, many = DriftMonitor(), DriftMonitor()
    singles = [one.update(loss) for loss in losses]
    assert many.update_many(losses[:split]) + many.update_many(losses[split:]) == singles
    assert (many.n, many.n_detections, many.last_detection_index, many.estimation) == (
        one.n,
        one.n_detections,
        one.last_detection_index,
        one.estimation,
    )
