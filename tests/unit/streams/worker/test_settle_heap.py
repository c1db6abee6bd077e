"""The worker keeps the garbage collector off its start-up heap (bench/pipeline_speed.py --gc)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from streams.worker.process import GC_YOUNG_THRESHOLD, settle_heap


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_gc")
def test_start_up_objects_are_never_walked_again_and_young_ones_are_collected_rarely() -> None:
    built_at_start = {"model": [object()]}
    settle_heap()
    assert gc.get_freeze_count() > 0
    assert not any(obj is built_at_start for obj in gc.get_objects())
    assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD > 700
