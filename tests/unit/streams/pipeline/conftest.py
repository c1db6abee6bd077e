"""Factories of the sponsored items' parts: campaigns, a real calibrator, a calibrated scorer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from model.calibration import ClickCalibrator, RankOutcomes, fit_calibrator
from model.checkpoint import load_checkpoint, save_calibrator
from model.serving.scorers import CheckpointScorer
from streams.pipeline.ads.campaigns import Campaign

#: Calibrator buckets: ranks 0, 1, 2-3 and 4-9; nothing measured from rank 10 on.
EDGES = (0, 1, 2, 4, 10)


@pytest.fixture
def make_campaign() -> Callable[..., Campaign]:
    """``make_campaign(campaign_id="c1", items=("a",), **fields)``: an active campaign since 0,
    0.5 per click, a budget of 100 a day, no end and no targeting unless told."""

    def make(campaign_id: str = "c1", items: tuple[str, ...] = ("a",), **fields: Any) -> Campaign:
        defaults: dict[str, Any] = {
            "advertiser": "acme",
            "per": "click",
            "amount": 0.5,
            "daily_budget": 100.0,
            "start": 0.0,
            "end": None,
        }
        return Campaign(campaign_id, items=items, **{**defaults, **fields})

    return make


@pytest.fixture
def calibrator() -> ClickCalibrator:
    """A real calibrator fitted on made-up lists of 10: clicks fall with rank, purchases too.

    Per 100 lists: 30 clicks at rank 0, 20 at 1, 10 at 2-3, 5 at 4-9, 35 nowhere;
    purchases at ranks 0, 1 and 4.
    """
    clicks = [0] * 30 + [1] * 20 + [2] * 5 + [3] * 5 + [5] * 5 + [-1] * 35
    purchases = [(0, 0), (1, 0), (2, 0), (3, 0), (30, 1), (31, 1), (55, 4)]
    outcomes = RankOutcomes(
        lengths=np.full(len(clicks), 10, dtype=np.int64),
        clicks=np.asarray(clicks, dtype=np.int64),
        purchase_ranks=np.asarray([rank for _, rank in purchases], dtype=np.int64),
        purchase_cases=np.asarray([case for case, _ in purchases], dtype=np.int64),
    )
    return fit_calibrator(outcomes, edges=EDGES)


@pytest.fixture
def calibrated_scorer(
    tmp_path: Path, tiny_checkpoint: Callable[..., Path], calibrator: ClickCalibrator
) -> CheckpointScorer:
    """A tiny checkpoint over items a-e with ``calibrator`` saved beside its weights."""
    run = tiny_checkpoint(tmp_path / "run")
    save_calibrator(run / "epoch-0001", calibrator)
    return CheckpointScorer(load_checkpoint(run), bf16=False)
