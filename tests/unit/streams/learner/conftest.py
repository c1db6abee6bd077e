"""Fixtures for the learner tests: a trained scorer published as the store's current version."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from model.checkpoint import save_checkpoint
from model.config import ScorerConfig
from model.scorer import SequenceScorer
from model.training.train import TrainConfig, train
from model.vocab import ItemVocab
from online_learning.registry import ModelStore
from streams.settings import Settings
from tests.unit.walks import walks


@pytest.fixture
def learner_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Factory of settings to learn from a trained scorer, the model store's current version.

    ``learner_settings(rng, n_items=..., epochs=15, privacy=None, **overrides)`` trains a
    16-wide scorer for ``epochs`` on 400 walks k -> k + 1 over items ``i1 .. i<n_items - 1>``
    (drawn from ``rng``), publishes it into ``tmp_path / "store"`` with ``privacy`` as its
    spend, makes it current, and returns settings that update every 32 events and publish
    only when drift asks; ``overrides`` (a pseudonym key, DP-SGD options) win.
    """

    def make(
        rng: random.Random,
        *,
        n_items: int,
        epochs: int = 15,
        privacy: dict[str, object] | None = None,
        **overrides: object,
    ) -> Settings:
        torch.manual_seed(0)
        model = SequenceScorer(ScorerConfig(n_items=n_items, d_model=16, n_heads=2, max_len=8))
        train(
            model,
            walks(400, rng, n_items=n_items, step=1),
            TrainConfig(epochs=epochs, negatives=0, bf16=False, learning_rate=1e-2),
            optimizer=torch.optim.Adam(model.parameters(), lr=1e-2),
            progress=False,
        )
        save_checkpoint(
            tmp_path / "run",
            epoch=1,
            model=model,
            optimizer=torch.optim.Adam(model.parameters()),
            vocab=ItemVocab.build([[f"i{n}" for n in range(1, n_items)]]),
            meta={},
        )
        store = ModelStore(tmp_path / "store")
        store.set_current(
            store.publish(tmp_path / "run", parent=None, metrics={}, privacy=privacy).version
        )
        options: dict[str, object] = {
            "learn_update_every": 32,
            "learn_publish_every": 10_000,
            "learn_publish_seconds": 3600,
        }
        return Settings(model_store=store.root, **{**options, **overrides})  # type: ignore[arg-type]

    return make
