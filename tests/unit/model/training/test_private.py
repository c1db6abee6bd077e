"""DP-SGD training (model/training/private.py): settings, per-sample gradients, accounting."""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from opacus.optimizers import DPOptimizer

from model.batches import pad_histories
from model.checkpoint import load_checkpoint
from model.config import ScorerConfig
from model.evaluation.metrics import RankingMetrics
from model.ranking.knn import Popularity
from model.scorer import PrefixRanker, SequenceScorer
from model.training.attention import AttentionSwap
from model.training.dp_sgd import (
    benign_warnings_ignored,
    chunks,
    private_step,
    session_losses,
    trained_parameters,
)
from model.training.fit import fit, validation_split
from model.training.private import make_private, train_private
from model.training.train import TrainConfig, train
from tests.unit.walks import walks

N_ITEMS = 30
SESSIONS = [[1, 2, 3, 4, 5], [6, 7], [8, 9, 10], [11, 12, 13, 14]]
NEGATIVES = torch.tensor([3, 15, 16, 17, 20, 25])


def _scorer(seed: int = 0, **options: Any) -> SequenceScorer:
    torch.manual_seed(seed)
    options = {"repeat": False, "item_readout": False, **options}  # what DP runs build
    config = ScorerConfig(n_items=N_ITEMS, d_model=16, n_heads=2, max_len=8, **options)
    return SequenceScorer(config)


@pytest.mark.parametrize(
    "settings",
    [
        {"dp_epsilon": 0.0},
        {"dp_epsilon": -1.0},
        {"dp_epsilon": math.nan},
        {"dp_epsilon": math.inf},
        {"dp_epsilon": 1.0, "dp_delta": 0.0},
        {"dp_epsilon": 1.0, "dp_delta": 1.0},
        {"dp_delta": math.nan},
        {"dp_max_grad_norm": 0.0},
        {"dp_max_grad_norm": -1.0},
        {"dp_accountant": "gdp"},
    ],
)
def test_invalid_dp_settings_raise(settings: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="dp_"):
        TrainConfig(**settings)


def test_plain_train_refuses_a_dp_config() -> None:
    scorer = _scorer()
    with pytest.raises(ValueError, match="train_private"):
        train(
            scorer,
            SESSIONS,
            TrainConfig(dp_epsilon=1.0),
            optimizer=torch.optim.Adam(scorer.parameters()),
            progress=False,
        )


@pytest.mark.parametrize("training", [False, True])
def test_per_sample_attention_equals_multihead_attention(training: bool) -> None:
    scorer = _scorer(dropout=0.0, embedding_dropout=0.0).train(training)
    batch = pad_histories(SESSIONS, max_len=8)
    with torch.no_grad():
        expected = scorer.hidden(batch)
        with AttentionSwap(scorer).per_sample():
            swapped = scorer.hidden(batch)
        assert type(scorer.blocks.layers[0].self_attn) is torch.nn.MultiheadAttention
    torch.testing.assert_close(swapped, expected, rtol=1e-5, atol=1e-5)


def test_per_session_gradients_are_those_of_each_session_alone() -> None:
    """Opacus' per-sample gradients = autograd on one session at a time, and get clipped."""
    scorer = _scorer(dropout=0.0, embedding_dropout=0.0).train()
    parameters = trained_parameters(scorer)
    config = TrainConfig(batch_size=4, dp_epsilon=4.0, dp_max_grad_norm=1e-3, dp_accountant="rdp")
    swap = AttentionSwap(scorer)
    with swap.per_sample():
        run = make_private(
            scorer, torch.optim.SGD(parameters), 40, config, generator=torch.Generator()
        )
        assert isinstance(run.optimizer, DPOptimizer)
        with benign_warnings_ignored():
            session_losses(scorer, pad_histories(SESSIONS, max_len=8), NEGATIVES).mean().backward()
        per_sample = [p.grad_sample.clone() for p in parameters]
        run.hooks.disable_hooks()
        for row, session in enumerate(SESSIONS):
            scorer.zero_grad()
            with benign_warnings_ignored():
                session_losses(scorer, pad_histories([session], max_len=8), NEGATIVES).backward()
            for p, samples in zip(parameters, per_sample, strict=True):
                alone = torch.zeros_like(p) if p.grad is None else p.grad
                torch.testing.assert_close(samples[row], alone, rtol=1e-4, atol=1e-5)
        # Clipping: the summed gradient of 4 sessions is at most 4 x the clip norm.
        for p, samples in zip(parameters, per_sample, strict=True):
            p.grad_sample = samples
        raw = torch.cat([s.sum(0).flatten() for s in per_sample]).norm()
        run.optimizer.signal_skip_step(do_skip=True)
        run.optimizer.step()
        clipped = torch.cat([p.summed_grad.flatten() for p in parameters]).norm()
    run.hooks.cleanup()
    assert raw > 1.0 and clipped <= 4 * config.dp_max_grad_norm * (1 + 1e-4)


def test_an_empty_poisson_sample_takes_a_noise_only_step() -> None:
    scorer = _scorer().train()
    config = TrainConfig(batch_size=4, dp_epsilon=4.0, dp_accountant="rdp")
    before = [p.detach().clone() for p in trained_parameters(scorer)]
    swap, generator = AttentionSwap(scorer), torch.Generator().manual_seed(0)
    with swap.per_sample():
        run = make_private(
            scorer,
            torch.optim.SGD(trained_parameters(scorer), lr=0.1),
            40,
            config,
            generator=generator,
        )
        private_step(scorer, run.optimizer, [], config.dp_negatives, generator)
    run.hooks.cleanup()
    assert run.spent(config)["steps"] == 1
    moved = [not torch.equal(b, p) for b, p in zip(before, trained_parameters(scorer), strict=True)]
    assert all(moved)  # noise reaches every parameter
    assert not scorer.embed.items.weight[0].any()


@given(st.lists(st.integers(min_value=2, max_value=60), max_size=80), st.integers(1, 16))
def test_chunks_hold_every_session_once_sorted_and_bounded(lengths: list[int], size: int) -> None:
    rows = [[1] * n for n in lengths]
    pieces = chunks(rows, size, 50)
    assert sorted(map(len, (r for c in pieces for r in c))) == sorted(lengths)
    assert all(0 < len(chunk) <= size for chunk in pieces)


def _events_file(path: Path, sessions: list[list[int]]) -> Path:
    rows = ["ts,user_id,session_id,type,item_id,category,price,query"]
    for n, session in enumerate(sessions):
        rows += [f"{t},s{n},s{n},click,i{item},,," for t, item in enumerate(session)]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_dp_fit_records_privacy_resumes_its_accounting_and_loads(tmp_path: Path) -> None:
    sessions = walks(300, random.Random(0), n_items=N_ITEMS)
    sessions[5] = [N_ITEMS + 7, *sessions[5]]  # an item of one (training) session only
    # A validation session whose items the DP vocabulary lacks: its case is a miss.
    sessions.append([N_ITEMS + 20, N_ITEMS + 21, N_ITEMS + 22])
    data = _events_file(tmp_path / "events.csv", sessions)
    out = tmp_path / "run"
    options = {"d_model": 16, "n_heads": 2, "max_len": 8}
    config = TrainConfig(
        epochs=2,
        batch_size=32,
        dp_negatives=8,
        dp_epsilon=3.0,
        dp_delta=1e-3,
        dp_accountant="rdp",
        dp_vocab_epsilon=20.0,
    )
    # A run cut short after epoch 1 (its time budget is gone), then resumed.
    first = fit(
        data,
        out,
        train_config=replace(config, max_minutes=1e-9),
        scorer_options=options,
        progress=False,
    )
    assert len(first) == 1 and first[0].privacy is not None
    with pytest.raises(ValueError, match="target_epsilon"):
        fit(
            data,
            out,
            train_config=replace(config, dp_epsilon=8.0),
            scorer_options=options,
            progress=False,
        )
    with pytest.raises(ValueError, match="differentially private run"):
        fit(data, out, train_config=TrainConfig(epochs=2), scorer_options=options, progress=False)
    second = fit(data, out, train_config=config, scorer_options=options, progress=False)
    assert [report.epoch for report in second] == [2]

    loaded = load_checkpoint(out)
    assert loaded.model.repeat_head is None and loaded.model.item_readout is None
    privacy = loaded.meta["privacy"]
    assert privacy["unit"] == "session" and privacy["sgd_delta"] == 1e-3
    assert privacy["max_grad_norm"] == 1.0 and privacy["noise_multiplier"] > 0
    assert privacy["steps"] == privacy["planned_steps"] == 2 * round(1 / privacy["sample_rate"])
    assert first[0].privacy["sgd_epsilon"] < privacy["sgd_epsilon"] <= 3.0
    # The vocabulary and the served ranker's memory are DP releases too, in the total.
    assert privacy["vocabulary"]["epsilon"] == 20.0 and privacy["memory"]["epsilon"] == 1.0
    assert privacy["delta"] == pytest.approx(3e-3)
    assert privacy["epsilon"] == pytest.approx(privacy["sgd_epsilon"] + 20.0 + 1.0)
    # The validation sessions paid for two epochs' metrics, the mix and the calibration: 1.0.
    assert privacy["validation_part"] == {"epsilon": pytest.approx(1.0), "releases": 4}
    assert privacy["calibration"]["epsilon"] == pytest.approx(0.25)
    assert loaded.calibrator is not None and loaded.calibrator.epsilon == pytest.approx(0.25)
    assert loaded.ranking is not None and loaded.ranking.sessions is None
    assert second[-1].privacy == privacy  # what `intentstream train` prints is the whole spend
    assert loaded.ranking.transitions is not None
    assert f"i{N_ITEMS + 7}" not in loaded.vocab.index  # one session's item is not released
    assert len(loaded.vocab) - 1 == privacy["vocabulary"]["items"] >= N_ITEMS - 5
    assert json.loads((out / "epoch-0001" / "meta.json").read_text())["privacy"]["epsilon"] > 0
    with torch.inference_mode():
        scores = loaded.model.score_many(pad_histories([[1, 2, 3]], max_len=8))
    assert scores.shape == (1, len(loaded.vocab)) and torch.isfinite(scores[0, 1:]).all()


def test_dp_training_learns_an_easy_pattern_at_a_large_epsilon() -> None:
    rng = random.Random(0)
    sessions, held_out = walks(600, rng, n_items=N_ITEMS), walks(200, rng, n_items=N_ITEMS)
    prefixes, targets = [s[:-1] for s in held_out], torch.tensor([s[-1] for s in held_out])
    scorer = _scorer(seed=1)
    config = TrainConfig(
        epochs=5, batch_size=32, dp_negatives=8, dp_epsilon=50.0, dp_delta=1e-3, dp_accountant="rdp"
    )
    reports = train_private(
        scorer,
        sessions,
        config,
        optimizer=torch.optim.Adam(trained_parameters(scorer), config.learning_rate),
        progress=False,
        generator=torch.Generator().manual_seed(0),
    )
    assert reports[-1].privacy is not None and 0 < reports[-1].privacy["epsilon"] <= 50.0
    learned = RankingMetrics()
    learned.update(PrefixRanker(scorer).score_many(prefixes), targets)
    popularity = RankingMetrics()
    popularity.update(Popularity(sessions, n_items=N_ITEMS).score_many(prefixes), targets)
    assert learned.result()["MRR@20"] > 3 * popularity.result()["MRR@20"]
    assert type(scorer.blocks.layers[0].self_attn) is torch.nn.MultiheadAttention


def test_a_private_run_validates_on_one_case_per_held_out_session() -> None:
    sessions = [[1, 2, 3, 4, 5]] * 90 + [[6, 7, 8, 9]] * 10
    split = validation_split(sessions, seed=0)
    assert len(split.prefixes) == 30 and len(set(split.owners)) == 10
    prefixes, targets = split.one_per_session()
    assert len(prefixes) == len(targets) == 10
    firsts = [split.owners.index(owner) for owner in sorted(set(split.owners))]
    assert sorted(map(tuple, prefixes)) == sorted(tuple(split.prefixes[i]) for i in firsts)
