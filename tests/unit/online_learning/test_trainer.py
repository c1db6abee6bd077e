"""The incremental trainer follows a change in the stream that a frozen model misses."""

from __future__ import annotations

import copy
import random

import pytest
import torch

from model.batches import pad_histories
from model.config import ScorerConfig
from model.scorer import SequenceScorer
from model.sessions import ItemVocab
from model.train import TrainConfig, train
from online_learning.trainer import IncrementalTrainer, UpdateConfig
from tests.unit.walks import walks

N = 12
VOCAB = ItemVocab.build([[f"i{n}" for n in range(1, N)]])


def _hit_rate(model: SequenceScorer, walks: list[list[int]]) -> float:
    batch = pad_histories([w[:-1] for w in walks], max_len=8)
    with torch.inference_mode():
        top = model.score_many(batch)[0].topk(1).indices[:, 0]
    return float((top == torch.tensor([w[-1] for w in walks])).float().mean())


def test_updates_follow_a_shift_the_frozen_model_misses() -> None:
    torch.manual_seed(0)
    rng = random.Random(0)
    model = SequenceScorer(ScorerConfig(n_items=N, d_model=16, n_heads=2, max_len=8))
    before = walks(400, rng, n_items=N, step=1)
    config = TrainConfig(epochs=15, negatives=0, bf16=False, learning_rate=1e-2)
    train(
        model,
        before,
        config,
        optimizer=torch.optim.Adam(model.parameters(), lr=1e-2),
        progress=False,
    )
    frozen = copy.deepcopy(model).eval()
    trainer = IncrementalTrainer(
        model.eval(),
        VOCAB,
        config=UpdateConfig(update_every=32, steps=8, batch_size=32, learning_rate=1e-2),
        replay=before,
    )
    for walk in walks(640, rng, n_items=N, step=2):  # the stream changes: k -> k + 2
        trainer.observe([VOCAB.ids[i] for i in walk])
    after = walks(200, rng, n_items=N, step=2)
    assert trainer.updates == 20 and trainer.examples == 640
    assert _hit_rate(frozen, after) < 0.2
    assert _hit_rate(trainer.model, after) > 0.8


def test_the_replay_reservoir_is_bounded_and_sequences_too_short_are_skipped() -> None:
    model = SequenceScorer(ScorerConfig(n_items=N, d_model=8, n_heads=2)).eval()
    trainer = IncrementalTrainer(
        model,
        VOCAB,
        config=UpdateConfig(update_every=1000, replay_capacity=5),
        replay=[[1, 2]] * 50,
    )
    assert len(trainer._reservoir) == 5
    assert not trainer.observe(["i1"]) and not trainer.observe(["i1", "unknown"])
    assert trainer.examples == 0
    with pytest.raises(ValueError):
        UpdateConfig(update_every=0)
