"""Segment rolls after erasures: due once segment.ms has passed, and never lost to a restart."""

from __future__ import annotations

import pytest

from streams.worker import shredding
from streams.worker.shredding import SEGMENT_SECONDS, SegmentRoller


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1_000.0]
    monkeypatch.setattr(shredding.time, "monotonic", lambda: now[0])
    return now


def test_every_partition_rolls_once_after_a_start_then_only_those_that_erased(
    clock: list[float],
) -> None:
    roller = SegmentRoller(3)  # a roll pending before a crash was only in memory
    assert roller.due() == []
    clock[0] += SEGMENT_SECONDS + 1.5
    assert sorted(roller.due()) == [0, 1, 2]
    roller.note({1})
    assert roller.due() == []  # not before segment.ms has passed since the erasure
    clock[0] += SEGMENT_SECONDS + 1.5
    assert roller.due() == [1] and roller.due() == []


def test_an_erasure_soon_after_the_start_waits_its_own_segment_ms(clock: list[float]) -> None:
    roller = SegmentRoller(3)
    clock[0] += 5.0
    roller.note({1})  # the segment holding this erasure may be younger than segment.ms
    clock[0] += SEGMENT_SECONDS - 3.5
    assert sorted(roller.due()) == [0, 2]
    clock[0] += 5.0
    assert roller.due() == [1]
