"""The incremental trainer follows a change in the stream that a frozen model misses."""

from __future__ import annotations

import copy
import logging
import math
import random
from pathlib import Path

import pytest
import torch
from opacus.accountants import RDPAccountant

from model.batches import pad_histories
from model.checkpoint import load_checkpoint, save_checkpoint
from model.config import ScorerConfig
from model.scorer import SequenceScorer
from model.serving.scorers import CheckpointScorer
from model.training.train import TrainConfig, train
from model.training.update import OnlinePrivacy
from model.vocab import ItemVocab
from online_learning.budget import SpendWindows
from online_learning.trainer import IncrementalTrainer, UpdateConfig
from tests.unit.walks import walks

N = 12
VOCAB = ItemVocab.build([[f"i{n}" for n in range(1, N)]])


def _hit_rate(model: SequenceScorer, walks: list[list[int]]) -> float:
    batch = pad_histories([w[:-1] for w in walks], max_len=8)
    with torch.inference_mode():
        top = model.score_many(batch).topk(1).indices[:, 0]
    return float((top == torch.tensor([w[-1] for w in walks])).float().mean())


def test_updates_follow_a_shift_the_frozen_model_misses() -> None:
    torch.manual_seed(0)
    rng = random.Random(0)
    # A strict k -> k + 1 chain needs the hidden-state query (model/scorer.py, ItemReadout).
    chain = ScorerConfig(n_items=N, d_model=16, n_heads=2, max_len=8, item_readout=False)
    model = SequenceScorer(chain)
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
        config=UpdateConfig(update_every=1000, replay_capacity=5, grow=False),
        replay=[[1, 2]] * 50,
    )
    assert len(trainer._reservoir) == 5
    assert not trainer.observe(["i1"]) and not trainer.observe(["i1", "unknown"])
    assert trainer.examples == 0
    with pytest.raises(ValueError):
        UpdateConfig(update_every=0)


def _private_trainer(
    *,
    budget: float = 100.0,
    sample_rate: float = 1.0,
    windows: SpendWindows | None = None,
    **options: int,
) -> IncrementalTrainer:
    torch.manual_seed(0)
    model = SequenceScorer(ScorerConfig(n_items=N, d_model=8, n_heads=2, max_len=8)).eval()
    privacy = OnlinePrivacy(
        noise_multiplier=1.0,
        max_grad_norm=1.0,
        delta=1e-5,
        epsilon_budget=budget,
        sample_rate=sample_rate,
    )
    config = UpdateConfig(**options)
    return IncrementalTrainer(model, VOCAB, config=config, privacy=privacy, windows=windows)


def test_with_privacy_each_session_has_one_pending_row_its_longest_prefix() -> None:
    trainer = _private_trainer(update_every=2, steps=3, batch_size=2)
    assert not trainer.observe(["i1", "i2"], key="s1")
    assert not trainer.observe(["i1", "i2", "i3"], key="s1")  # still one session pending
    assert trainer._pool.rows() == [[1, 2, 3]]
    assert trainer.observe(["i4", "i5"], key="s2")
    spent = trainer.privacy_spent()
    assert spent is not None and spent["steps"] == 3 and spent["epsilon"] > 0
    assert trainer.updates == 1 and trainer.examples == 3 and not len(trainer._pool)
    assert math.isnan(trainer.last_loss)  # computed before noise: never published
    assert not trainer.model.training
    with pytest.raises(ValueError, match="key"):
        trainer.observe(["i1", "i2"])


def test_privacy_allows_no_replay_and_is_off_by_default() -> None:
    with pytest.raises(ValueError, match="replay"):
        IncrementalTrainer(
            SequenceScorer(ScorerConfig(n_items=N, d_model=8, n_heads=2)),
            VOCAB,
            config=UpdateConfig(),
            replay=[[1, 2]],
            privacy=OnlinePrivacy(
                noise_multiplier=1.0, max_grad_norm=1.0, delta=1e-5, epsilon_budget=1.0
            ),
        )
    model = SequenceScorer(ScorerConfig(n_items=N, d_model=8, n_heads=2)).eval()
    assert IncrementalTrainer(model, VOCAB, config=UpdateConfig()).privacy_spent() is None


def test_with_privacy_updates_stop_at_the_budget_and_examples_are_still_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    accountant = RDPAccountant()
    accountant.history = [(1.0, 1.0, 5)]
    five = accountant.get_epsilon(1e-5)
    accountant.history = [(1.0, 1.0, 6)]
    budget = (five + accountant.get_epsilon(1e-5)) / 2  # room for 5 steps, not 6
    trainer = _private_trainer(budget=budget, update_every=1, steps=2, batch_size=1)
    with caplog.at_level(logging.WARNING, logger="online_learning.trainer"):
        for n in range(1, 7):
            trainer.observe(["i1", f"i{n + 1}"], key=f"s{n}")
    spent = trainer.privacy_spent()
    assert spent is not None and spent["steps"] == 5 and spent["epsilon"] <= budget
    assert trainer.updates == 3 and trainer.examples == 6 and not len(trainer._pool)
    assert len([r for r in caplog.records if "lifetime privacy budget" in r.message]) == 1
    assert not trainer.learning


def test_with_privacy_sessions_stay_in_the_pool_and_each_step_samples_it_at_the_rate() -> None:
    trainer = _private_trainer(
        sample_rate=0.5, update_every=4, steps=3, batch_size=4, pool_updates=2
    )
    for n in range(4):
        trainer.observe(["i1", f"i{n + 2}"], key=f"a{n}")
    assert len(trainer._pool) == 4  # stays one more update
    for n in range(4):
        trainer.observe(["i2", f"i{n + 3}"], key=f"b{n}")
    assert len(trainer._pool) == 4  # the first four left after their second update
    spent = trainer.privacy_spent()
    assert spent is not None and spent["accountant_history"] == [[1.0, 0.5, 6]]
    accountant = RDPAccountant()
    accountant.history = [(1.0, 0.5, 6)]
    assert spent["epsilon"] == pytest.approx(accountant.get_epsilon(1e-5), rel=1e-9)


def test_with_privacy_a_window_refuses_steps_beyond_its_share_and_the_next_resumes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    accountant = RDPAccountant()
    accountant.history = [(1.0, 1.0, 2)]
    two = accountant.get_epsilon(1e-5)
    accountant.history = [(1.0, 1.0, 3)]
    share = (two + accountant.get_epsilon(1e-5)) / 2  # room for 2 steps in the first window
    now = [0.0]
    windows = SpendWindows(epsilon=share, seconds=3600, clock=lambda: now[0])
    trainer = _private_trainer(windows=windows, update_every=1, steps=1, batch_size=1)
    with caplog.at_level(logging.WARNING, logger="online_learning.trainer"):
        for n in range(4):
            trainer.observe(["i1", f"i{n + 2}"], key=f"s{n}")
        spent = trainer.privacy_spent()
        assert spent is not None and spent["steps"] == 2 and trainer.updates == 2
        assert spent["window"] == {"epsilon": share, "seconds": 3600, "index": 0, "start": 0.0}
        assert trainer.learning  # waiting for the window, not done
        now[0] = 3600.0
        for n in range(4, 6):
            trainer.observe(["i1", f"i{n + 2}"], key=f"s{n}")
    spent = trainer.privacy_spent()
    assert spent is not None and spent["steps"] == 4 and spent["window"]["index"] == 1
    assert spent["window"]["start"] == pytest.approx(two)
    assert len([r for r in caplog.records if "window's privacy budget" in r.message]) == 1


def _new_item_stream(*, grow: bool) -> IncrementalTrainer:
    """A trainer that saw 320 sessions where the new item "new" always follows "i1"."""
    torch.manual_seed(0)
    rng = random.Random(0)
    model = SequenceScorer(ScorerConfig(n_items=N, d_model=16, n_heads=2, max_len=8)).eval()
    vocab = ItemVocab.build([VOCAB.ids[1:]])  # a copy: growing adds to it in place
    config = UpdateConfig(update_every=32, steps=8, batch_size=32, learning_rate=1e-2, grow=grow)
    trainer = IncrementalTrainer(model, vocab, config=config)
    for _ in range(160):
        k = rng.randrange(2, N - 1)
        trainer.observe(["i1", "new"])
        trainer.observe([f"i{k}", f"i{k + 1}"])
    return trainer


def test_a_new_item_gets_a_row_and_is_recommended_once_learned() -> None:
    grown = _new_item_stream(grow=True)
    assert grown.updates == 10 and grown.examples == 320
    assert grown.model.config.n_items == N + 1 == grown.model.item_table().shape[0]
    assert grown._vocab.ids == [*VOCAB.ids, "new"]  # old indices unchanged, "new" appended
    assert grown.top_k([["i1"]], k=1) == [["new"]]
    fixed = _new_item_stream(grow=False)
    assert fixed.examples == 160 and fixed.model.config.n_items == N
    assert "new" not in fixed.top_k([["i1"]], k=N)[0]


def test_top_k_before_the_update_knows_only_items_that_have_rows() -> None:
    model = SequenceScorer(ScorerConfig(n_items=4, d_model=8, n_heads=2)).eval()
    vocab = ItemVocab.build([["a", "b", "c"]])
    trainer = IncrementalTrainer(model, vocab, config=UpdateConfig(update_every=3))
    assert not trainer.observe(["a", "n1", "n2", "n3"]) and not trainer.observe(["n4", "b"])
    assert len(vocab) == model.config.n_items == 4  # nothing grows before the update
    before = trainer.top_k([["a", "n1"], ["n1", "n2"], ["b"]], k=10)
    assert before[1] == [] and all(sorted(top) == ["a", "b", "c"] for top in (before[0], before[2]))
    assert trainer.observe(["n2", "c"])
    assert vocab.ids == ["", "a", "b", "c", "n1", "n2", "n3", "n4"]
    assert model.config.n_items == 8 and model.embed.items.padding_idx == 0
    assert sorted(trainer.top_k([["n1", "n2"]], k=10)[0]) == vocab.ids[1:]


def test_the_item_table_stops_growing_at_max_items(caplog: pytest.LogCaptureFixture) -> None:
    model = SequenceScorer(ScorerConfig(n_items=N, d_model=8, n_heads=2)).eval()
    vocab = ItemVocab.build([VOCAB.ids[1:]])
    trainer = IncrementalTrainer(model, vocab, config=UpdateConfig(update_every=2, max_items=N + 2))
    with caplog.at_level(logging.WARNING, logger="online_learning.trainer"):
        assert not trainer.observe(["i1", "n1", "n2", "n3", "n4"])
        assert not trainer.observe(["n5", "n6"])  # both skipped: too short
        assert trainer.observe(["i2", "n7", "n1"])
    assert vocab.ids[N:] == ["n1", "n2"] and model.config.n_items == N + 2
    assert trainer._pending == {} and trainer.examples == 2
    assert len([r for r in caplog.records if "max_items" in r.message]) == 1


def test_privacy_and_growing_exclude_each_other() -> None:
    privacy = OnlinePrivacy(noise_multiplier=1.0, max_grad_norm=1.0, delta=1e-5, epsilon_budget=1.0)
    model = SequenceScorer(ScorerConfig(n_items=N, d_model=8, n_heads=2)).eval()
    with pytest.raises(ValueError, match="growing"):
        IncrementalTrainer(model, VOCAB, config=UpdateConfig(grow=True), privacy=privacy)
    trainer = IncrementalTrainer(model, VOCAB, config=UpdateConfig(), privacy=privacy)
    assert not trainer.observe(["i1", "zzz"], key="s1") and trainer.examples == 0
    assert len(VOCAB) == N


def test_a_grown_model_saved_with_its_vocab_loads_and_ranks_the_new_item(tmp_path: Path) -> None:
    trainer = _new_item_stream(grow=True)
    save_checkpoint(
        tmp_path,
        epoch=1,
        model=trainer.model,
        optimizer=trainer._optimizer,
        vocab=trainer._vocab,
        meta={},
    )
    checkpoint = load_checkpoint(tmp_path)
    assert checkpoint.model.config.n_items == N + 1 and checkpoint.vocab.ids[-1] == "new"
    ranked = CheckpointScorer(checkpoint, bf16=False).score_many([["i1"]], k=1)
    assert [item for item, _ in ranked[0]] == ["new"]


def test_forget_drops_an_owners_sequences_and_the_new_items_only_they_held() -> None:
    model = SequenceScorer(ScorerConfig(n_items=4, d_model=8, n_heads=2)).eval()
    vocab = ItemVocab.build([["a", "b", "c"]])
    trainer = IncrementalTrainer(model, vocab, config=UpdateConfig(update_every=2))
    assert not trainer.observe(["a", "b"], owner="erased")
    assert trainer.observe(["b", "c"], owner="kept")  # an update: both join the reservoir
    trainer.update_every = 10
    assert not trainer.observe(["a", "secret"], owner="erased")
    assert not trainer.observe(["b", "shared"], owner="erased")
    assert not trainer.observe(["c", "shared"], owner="kept")
    assert trainer.forget({"erased"}) == 3  # one replayed, two pending
    assert [owner for owner, _ in trainer._reservoir] == ["kept"]
    # "secret" only the erased user held; "shared" takes its index.
    assert trainer._fresh == {"shared": 4}
    assert list(trainer._pending.values()) == [("kept", [3, 4])]
    trainer.update()
    assert vocab.ids == ["", "a", "b", "c", "shared"] and model.config.n_items == 5
