"""The calibrator ``intentstream train`` fits on the validation split and stores with the run."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from model.checkpoint import load_checkpoint, save_ranker
from model.ranking.knn import item_matrix
from model.ranking.parts import FusionWeights, RankerParts
from model.ranking.ranker import served_ranker
from model.training.calibration import CalibrationCases, calibrate_run, rank_outcomes
from model.training.fit import fit
from model.training.train import TrainConfig
from tests.unit.walks import walks

N_ITEMS = 30


def _shop_log(path: Path, sessions: list[list[int]]) -> Path:
    """Every third session carts and buys its third item, then views on."""
    rows = ["ts,user_id,session_id,type,item_id,category,price,query"]
    for n, (a, b, c, d) in enumerate(sessions):
        events = [("view", a), ("view", b), ("view", c)]
        if n % 3 == 0:
            events += [("add_to_cart", c), ("purchase", c)]
        events += [("view", d), ("view", a)]  # leave-last-out drops the last
        rows += [f"{t},u{n},s{n},{kind},i{item},,," for t, (kind, item) in enumerate(events)]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_a_run_stores_a_calibrator_whose_purchases_follow_intent(tmp_path: Path) -> None:
    data = _shop_log(tmp_path / "events.csv", walks(300, random.Random(0), n_items=N_ITEMS))
    out = tmp_path / "run"
    options = {"d_model": 16, "n_heads": 2, "max_len": 8}
    fit(data, out, train_config=TrainConfig(epochs=2), scorer_options=options, progress=False)

    loaded = load_checkpoint(out)
    calibrator = loaded.calibrator
    assert calibrator is not None and calibrator.epsilon is None
    assert calibrator.cases == loaded.meta["validation"]["cases"]
    assert calibrator.clicks[0] > 0.1  # a learnable walk: the next item is often on top
    # Shoppers with a cart (high purchase rate after add_to_cart) buy what they are shown.
    assert len(calibrator.intent_points) >= 2
    browsing, carting = calibrator.purchase_probabilities(np.array([0, 0]), np.array([0.0, 1.0]))
    assert carting > browsing
    assert max(calibrator.purchases) > 0


def test_validation_cases_are_ranked_without_their_own_sessions_in_knn(
    tmp_path: Path, tiny_checkpoint: Callable[..., Path]
) -> None:
    # No pattern at all: only a kNN index holding a validation session can foretell it.
    rng = random.Random(0)
    n_items = 200
    sessions = [rng.sample(range(1, n_items + 1), 4) for _ in range(400)]
    train_part, held_out = sessions[:360], sessions[360:]
    run = tiny_checkpoint(tmp_path / "run", items=[f"i{n}" for n in range(1, n_items + 1)])
    every_session = item_matrix(sessions, n_items=n_items + 1)
    weights = FusionWeights(transformer=0.1, neighbours=0.9)
    save_ranker(load_checkpoint(run).path, RankerParts(weights=weights, sessions=every_session))
    cases = CalibrationCases(
        prefixes=[s[:3] for s in held_out],
        targets=torch.tensor([s[3] for s in held_out]),
        bought=[[] for _ in held_out],
        intent=[],
    )

    leaked = rank_outcomes(served_ranker(load_checkpoint(run)), cases, depth=100)
    # Its own session's items come first: the prefix's three, then the next one.
    assert np.mean((leaked.clicks >= 0) & (leaked.clicks < 10)) > 0.9
    calibrate_run(run, cases, TrainConfig(), train_part=train_part)
    calibrator = load_checkpoint(run).calibrator
    assert calibrator is not None
    assert sum(calibrator.probabilities(np.arange(10))) < 0.2
