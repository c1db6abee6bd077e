"""Test sessions replayed through the worker's pipeline, scored from the lists it serves."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from streams.ops.session_replay import ReplayPlan, replay_in_process, replay_plan, without_dp
from streams.settings import Settings


def _data(folder: Path) -> Path:
    """A tiny SR-GNN layout: training sessions and the test cases of two test sessions."""
    rows = ["ts,user_id,session_id,type,item_id,category,price,query"]
    ts = 0
    for n in range(30):
        for item in ("a", "b", "c") if n % 2 else ("a", "b", "d"):
            rows.append(f"{ts},s{n},s{n},view,{item},,,")
            ts += 1
    folder.mkdir()
    with gzip.open(folder / "train.csv.gz", "wt") as out:
        out.write("\n".join(rows) + "\n")
    with gzip.open(folder / "test_cases.tsv.gz", "wt") as out:
        out.write("a b\tc\na\tb\nd\ta\n")
    return folder


def test_each_case_is_answered_by_the_event_that_ends_its_prefix(tmp_path: Path) -> None:
    plan = replay_plan(_data(tmp_path / "data"), warmup=False)
    assert plan.warmup == []
    assert [e["item_id"] for e in plan.events] == ["a", "b", "c", "d", "a"]
    assert len({e["user_id"] for e in plan.events}) == 2
    assert plan.answers == ["test-0-1", "test-0-0", "test-1-0"]
    assert plan.targets == ["c", "b", "a"]
    served = {"test-0-1": ["d", "c"], "test-0-0": ["b"]}  # test-1-0 got nothing
    quality = plan.quality(served)
    assert quality["P@20"] == pytest.approx(200 / 3)
    assert quality["MRR@20"] == pytest.approx(100 * (1 / 2 + 1) / 3)
    assert quality["missing"] == 1.0


def test_the_stream_baseline_learns_from_the_warmup_only_without_dp(tmp_path: Path) -> None:
    plan = replay_plan(_data(tmp_path / "data"), warmup=True)
    assert len(plan.warmup) == 90 and plan.events[0]["ts"] > plan.warmup[-1]["ts"]
    base = Settings(pseudonym_key="k" * 32, master_key="ab" * 32, privacy_window_seconds=10.0)
    exact = plan.quality(replay_in_process(without_dp(base), plan.warmup + plan.events))
    private = plan.quality(replay_in_process(base, plan.warmup + plan.events))
    assert exact["missing"] == private["missing"] == 0
    # Without DP, 15 sessions taught b -> c: the first case's target leads its list.
    assert exact["MRR@20"] > private["MRR@20"]


def test_a_plan_with_no_answers_is_refused() -> None:
    with pytest.raises(ValueError):
        ReplayPlan([], [], [], []).quality({})
