"""The learner checks each event before learning, and speeds up when the stream drifts."""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import torch

from model.checkpoint import save_checkpoint
from model.config import ScorerConfig
from model.scorer import SequenceScorer
from model.sessions import ItemVocab
from model.train import TrainConfig, train
from online_learning.registry import ModelStore
from streams.learn import Learner
from streams.pseudonym import Pseudonymizer
from streams.settings import Settings
from tests.unit.walks import walks

N = 60
KEY = "learn-test-key-0123456789abcdef"


def _values(walks: list[list[int]], first: int) -> list[bytes | None]:
    values: list[bytes | None] = []
    for n, walk in enumerate(walks, start=first):
        for j, item in enumerate(walk):
            event = {
                "event_id": f"e{n}-{j}",
                "user_id": f"person-{n}",
                "session_id": f"s{n}",
                "ts": 1.7e9 + n,
                "type": "view",
                "item_id": f"i{item}",
            }
            values.append(orjson.dumps(event))
    return values


def test_the_learner_scores_before_learning_and_reacts_to_drift(tmp_path: Path) -> None:
    rng = random.Random(0)
    torch.manual_seed(0)
    model = SequenceScorer(ScorerConfig(n_items=N, d_model=16, n_heads=2, max_len=8))
    train(
        model,
        walks(400, rng, n_items=N, step=1),
        TrainConfig(epochs=15, negatives=0, bf16=False, learning_rate=1e-2),
        optimizer=torch.optim.Adam(model.parameters(), lr=1e-2),
        progress=False,
    )
    vocab = ItemVocab.build([[f"i{n}" for n in range(1, N)]])
    save_checkpoint(
        tmp_path / "run",
        epoch=1,
        model=model,
        optimizer=torch.optim.Adam(model.parameters()),
        vocab=vocab,
        meta={},
    )
    store = ModelStore(tmp_path / "store")
    store.set_current(
        store.publish(tmp_path / "run", parent=None, metrics={}, privacy=None).version
    )
    settings = Settings(
        pseudonym_key=KEY,
        model_store=tmp_path / "store",
        learn_update_every=32,
        learn_publish_every=10_000,
        learn_publish_seconds=3600,
    )
    learner = Learner(settings, pseudonymizer=Pseudonymizer(KEY.encode()))

    learner.learn(_values(walks(150, rng, n_items=N, step=1), first=0))
    steady = learner.prequential.snapshot()
    assert steady.n == 450 and steady.hr > 0.9  # three checks per 4-click session
    assert learner.drifts == 0 and not learner.due()

    learner.learn(_values(walks(150, rng, n_items=N, step=3), first=1000))  # the stream changes
    assert learner.drifts >= 1
    assert learner.due()  # publish now, not in an hour
    assert learner.trainer.update_every == 8  # 4x as often
