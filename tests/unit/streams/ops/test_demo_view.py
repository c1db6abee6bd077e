"""The demo's live hit rates: which version made the list, which half, what was new."""

from __future__ import annotations

from streams.ops.demo_view import (
    FIRST_HALF,
    SECOND_HALF,
    DemoMonitor,
    ServedQuality,
    VersionQuality,
    _model_line,
)
from streams.ops.status import Scrape, parse


def _answer(event: str, version: str, items: list[str], user: str = "u") -> dict[str, object]:
    return {
        "user_id": user,
        "event_id": event,
        "model_version": version,
        "items": [{"item_id": item, "score": 1.0} for item in items],
    }


def test_hits_count_for_the_version_that_made_the_list_and_only_new_items_are_discoveries() -> None:
    log = {"e0": (0, "a"), "e1": (1, "b"), "e2": (2, "a"), "e3": (3, "c"), "e4": (4, "d")}
    quality = ServedQuality(log, second_half_from=2)
    quality.add(_answer("e0", "base", ["b"]))  # first half: no earlier list
    quality.add(_answer("e1", "base", ["a", "x"]))  # "b" was in base's list, and new to u
    quality.add(_answer("e2", "model", ["c"]))  # "a" was in base's list, but u had seen it
    quality.add(_answer("e3", "model", ["z"]))  # "c" was in the model's list, new to u
    quality.add(_answer("e4", "base", []))  # "d" was not in the model's list
    assert quality.by_part == {
        ("base", FIRST_HALF): VersionQuality(answered=2, checked=1, hits=1, discoveries=1),
        ("base", SECOND_HALF): VersionQuality(answered=1, checked=1, hits=1, discoveries=0),
        ("model", SECOND_HALF): VersionQuality(answered=2, checked=2, hits=1, discoveries=1),
    }
    assert quality.total(SECOND_HALF) == VersionQuality(
        answered=3, checked=3, hits=2, discoveries=1
    )


def test_shoppers_are_checked_against_their_own_last_list() -> None:
    quality = ServedQuality({"e0": (0, "a"), "e1": (1, "b"), "e2": (2, "a")}, second_half_from=0)
    quality.add(_answer("e0", "m", ["a"], user="u"))
    quality.add(_answer("e1", "m", ["b"], user="w"))  # w's first event: nothing to check
    quality.add(_answer("e2", "m", [], user="u"))  # u's "a" is in u's list
    assert quality.total(SECOND_HALF) == VersionQuality(
        answered=3, checked=1, hits=1, discoveries=0
    )


def test_the_model_line_says_when_the_worker_swapped_back_after_a_failed_probation() -> None:
    monitor = DemoMonitor(started_at=0.0, worker_alive=lambda: True, trains=True)
    monitor.model_version = "seq-1"
    swaps = "intentstream_model_swaps_total"
    monitor.on_metrics(parse("w", f'{swaps}{{outcome="swapped"}} 1\n'))
    assert "failed probation" not in _model_line(monitor)
    monitor.on_metrics(parse("w", f'{swaps}{{outcome="failed_probation"}} 1\n'))
    monitor.on_metrics(Scrape("w", error="connection refused"))  # a later failed scrape
    assert "seq-1" in _model_line(monitor) and "failed probation" in _model_line(monitor)
