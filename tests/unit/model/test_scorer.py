"""The sequence scorer: shapes, causality, batching, checkpoints, and that it learns."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from model.batches import pad_histories
from model.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from model.config import ScorerConfig
from model.evaluation.metrics import RankingMetrics
from model.ranking.knn import Popularity
from model.scorer import PrefixRanker, SequenceScorer
from model.training.train import TrainConfig, next_item_loss, train
from model.vocab import ItemVocab
from tests.unit.walks import walks

N_ITEMS = 30


#: The scorer's variants: queries from the last hidden state or from the item readout.
VARIANTS = {"state": {"item_readout": False}, "item readout": {"item_readout": True}}


def _scorer(seed: int = 0, **options: Any) -> SequenceScorer:
    torch.manual_seed(seed)
    config = ScorerConfig(n_items=N_ITEMS, d_model=16, n_heads=2, max_len=8, **options)
    return SequenceScorer(config).eval()


def test_shapes_and_padding_is_never_recommended() -> None:
    scorer = _scorer()
    batch = pad_histories([[1, 2, 3], [4]], max_len=8)
    assert scorer(batch).shape == (2, 3, 16)
    scores = scorer.score_many(batch)
    assert scores.shape == (2, N_ITEMS) and scores.dtype == torch.float32
    assert torch.isneginf(scores[:, 0]).all() and torch.isfinite(scores[:, 1:]).all()


HISTORY = st.lists(st.integers(min_value=1, max_value=N_ITEMS - 1), min_size=2, max_size=8)


@pytest.mark.parametrize("variant", VARIANTS)
@settings(max_examples=40, deadline=None)
@given(first=HISTORY, other=HISTORY, data=st.data())
def test_no_future_leakage_through_attention(
    variant: str, first: list[int], other: list[int], data: st.DataObject
) -> None:
    """Changing events after position t never changes the state or query at t."""
    cut = data.draw(st.integers(min_value=1, max_value=len(first) - 1))
    changed = first[:cut] + (other + first)[: len(first) - cut]
    scorer = _scorer(**VARIANTS[variant])

    def states(history: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        batch = pad_histories([history], max_len=8)
        h = scorer.hidden(batch)
        return h[0, :cut], scorer.queries(h, batch)[0, :cut]

    with torch.inference_mode():
        for a, b in zip(states(first), states(changed), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS)
@settings(max_examples=25, deadline=None)
@given(histories=st.lists(HISTORY, min_size=1, max_size=6))
def test_batched_scores_equal_one_by_one(variant: str, histories: list[list[int]]) -> None:
    scorer = _scorer(**VARIANTS[variant])
    with torch.inference_mode():
        together = scorer.score_many(pad_histories(histories, max_len=8))
        alone = torch.cat([scorer.score_many(pad_histories([h], max_len=8)) for h in histories])
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("variant", VARIANTS)
def test_checkpoint_round_trip(tmp_path: Path, variant: str) -> None:
    scorer = _scorer(seed=3, **VARIANTS[variant])
    vocab = ItemVocab.build([[f"i{n}" for n in range(1, N_ITEMS)]])
    optimizer = torch.optim.Adam(scorer.parameters())
    path = save_checkpoint(
        tmp_path,
        epoch=2,
        model=scorer,
        optimizer=optimizer,
        vocab=vocab,
        meta={"metrics": {"P@20": 1.0}, "data_fingerprint": "abc"},
    )
    assert latest_checkpoint(tmp_path) == path
    loaded = load_checkpoint(tmp_path)
    assert loaded.vocab.ids == vocab.ids
    assert loaded.meta["epoch"] == 2 and loaded.meta["data_fingerprint"] == "abc"
    batch = pad_histories([[1, 5, 9]], max_len=8)
    with torch.inference_mode():
        torch.testing.assert_close(loaded.model.score_many(batch), scorer.score_many(batch))


def clusters(count: int, rng: random.Random) -> list[list[int]]:
    """4-item sessions inside one of three 9-item clusters (items 1-9, 10-18, 19-27)."""
    starts = [9 * rng.randrange(3) for _ in range(count)]
    return [[start + rng.randrange(1, 10) for _ in range(4)] for start in starts]


@pytest.mark.parametrize(
    ("variant", "sessions"),
    [
        ("state", walks),  # item k is followed by k + 1
        ("item readout", lambda count, rng, n_items: clusters(count, rng)),
    ],
)
def test_small_training_run_beats_popularity_and_is_deterministic(
    variant: str, sessions: Callable[..., list[list[int]]]
) -> None:
    rng = random.Random(0)
    train_on, held_out = sessions(600, rng, n_items=N_ITEMS), sessions(200, rng, n_items=N_ITEMS)
    prefixes, targets = [s[:-1] for s in held_out], torch.tensor([s[-1] for s in held_out])
    config = TrainConfig(epochs=6, batch_size=32, learning_rate=3e-3, negatives=8, bf16=False)

    def run() -> dict[str, float]:
        scorer = _scorer(seed=1, **VARIANTS[variant]).train()
        train(
            scorer,
            train_on,
            config,
            optimizer=torch.optim.Adam(scorer.parameters(), 3e-3),
            progress=False,
        )
        metrics = RankingMetrics()
        metrics.update(PrefixRanker(scorer).score_many(prefixes), targets)
        return metrics.result()

    learned = run()
    popularity = RankingMetrics()
    popularity.update(Popularity(train_on, n_items=N_ITEMS).score_many(prefixes), targets)
    assert learned["MRR@20"] > 2 * popularity.result()["MRR@20"]
    assert learned["HR@10"] > 80.0
    assert run() == learned  # same seed, same result


def test_a_run_folder_loads_the_epoch_chosen_on_validation(tmp_path: Path) -> None:
    scorer, vocab = _scorer(seed=3), ItemVocab.build([[f"i{n}" for n in range(1, N_ITEMS)]])
    optimizer = torch.optim.Adam(scorer.parameters())
    for epoch, best in ((1, True), (2, True), (3, False)):  # epoch 3 overfit
        save_checkpoint(
            tmp_path,
            epoch=epoch,
            model=scorer,
            optimizer=optimizer,
            vocab=vocab,
            meta={},
            best=best,
        )
    assert latest_checkpoint(tmp_path) == tmp_path / "epoch-0003"  # resumes from here
    assert load_checkpoint(tmp_path).meta["epoch"] == 2  # serves this one


def test_training_stops_once_validation_stops_improving_for_patience_epochs() -> None:
    sessions = walks(100, random.Random(0), n_items=N_ITEMS)
    curve = iter([10.0, 20.0, 19.0, 19.5, 30.0])  # best at epoch 2, then two worse ones
    scorer = _scorer(seed=1)
    reports = train(
        scorer,
        sessions,
        TrainConfig(epochs=5, patience=2, batch_size=32, negatives=8, bf16=False),
        optimizer=torch.optim.Adam(scorer.parameters(), 3e-3),
        validate=lambda _: {"P@20": next(curve), "MRR@20": 1.0},
        progress=False,
    )
    assert [(r.epoch, r.best) for r in reports] == [(1, True), (2, True), (3, False), (4, False)]


def test_the_learning_rate_halves_every_half_life_and_resumes_where_it_was() -> None:
    sessions = walks(64, random.Random(0), n_items=N_ITEMS)
    config = TrainConfig(epochs=4, batch_size=32, learning_rate=4e-3, lr_half_life=2, negatives=8)
    scorer = _scorer(seed=1)
    optimizer = torch.optim.Adam(scorer.parameters(), 1.0)
    rates: list[float] = []

    def note_rate(_: SequenceScorer) -> dict[str, float]:
        rates.append(optimizer.param_groups[0]["lr"])
        return {"P@20": float(len(rates)), "MRR@20": 0.0}

    train(scorer, sessions, config, optimizer=optimizer, validate=note_rate, progress=False)
    train(
        scorer,
        sessions,
        config,
        optimizer=optimizer,
        start_epoch=2,
        validate=note_rate,
        progress=False,
    )
    assert rates == [4e-3, 2e-3, 1e-3, 5e-4, 1e-3, 5e-4]


def test_the_repeat_head_points_only_at_items_already_seen() -> None:
    """Gate forced open: the next item must come from the history, never the future."""
    scorer = _scorer()
    assert scorer.repeat_head is not None
    with torch.no_grad():
        scorer.repeat_head.gate.bias.fill_(30.0)  # g ~ 1: all mass on the pointer
    scores = scorer.score_many(pad_histories([[4, 7, 4]], max_len=8))
    probabilities = torch.softmax(scores, dim=-1)[0]
    assert probabilities[[4, 7]].sum() > 0.999
    generator = torch.Generator().manual_seed(0)
    repeats = next_item_loss(
        scorer.train(), pad_histories([[4, 4, 4, 4]], max_len=8), negatives=0, generator=generator
    )
    fresh = next_item_loss(
        scorer, pad_histories([[4, 7, 9, 11]], max_len=8), negatives=0, generator=generator
    )
    # A fresh next item is out of the pointer's reach (it would be cheap if the pointer saw
    # the target's own position); every target of the repeating session is within it.
    assert fresh > 15.0 > 1.0 > repeats


def test_the_repeat_head_learns_when_shoppers_come_back_to_an_item() -> None:
    """Sessions that alternate two items: with the repeat head they are easy."""
    rng = random.Random(0)
    sessions = []
    for _ in range(300):
        a, b = rng.sample(range(1, N_ITEMS), 2)
        sessions.append([a, b, a, b, a, b][: rng.randint(3, 6)])
    prefixes, targets = (
        [s[:-1] for s in sessions[-60:]],
        torch.tensor([s[-1] for s in sessions[-60:]]),
    )
    config = TrainConfig(epochs=4, batch_size=32, negatives=8, bf16=False)
    results = {}
    for repeat in (True, False):
        torch.manual_seed(0)
        scorer = SequenceScorer(
            ScorerConfig(n_items=N_ITEMS, d_model=16, n_heads=2, max_len=8, repeat=repeat)
        )
        optimizer = torch.optim.Adam(scorer.parameters(), 3e-3)
        train(scorer, sessions[:-60], config, optimizer=optimizer, progress=False)
        metrics = RankingMetrics()
        metrics.update(PrefixRanker(scorer).score_many(prefixes), targets)
        results[repeat] = metrics.result()["MRR@20"]
    assert results[True] > 90.0 > results[False]


def test_checkpoints_from_before_the_repeat_head_still_load(tmp_path: Path) -> None:
    config = ScorerConfig(n_items=N_ITEMS, d_model=16, n_heads=2, max_len=8, repeat=False)
    scorer = SequenceScorer(config)
    save_checkpoint(
        tmp_path,
        epoch=1,
        model=scorer,
        optimizer=torch.optim.Adam(scorer.parameters()),
        vocab=ItemVocab.build([[f"i{n}" for n in range(1, N_ITEMS)]]),
        meta={},
    )
    meta_file = tmp_path / "epoch-0001" / "meta.json"
    meta = json.loads(meta_file.read_text())
    del meta["config"]["repeat"]  # as written before the setting existed
    meta_file.write_text(json.dumps(meta))
    assert load_checkpoint(tmp_path).model.repeat_head is None


def test_the_item_readout_scores_against_the_historys_own_items() -> None:
    """A history of one repeated item queries with exactly that item's embedding."""
    scorer = _scorer(item_readout=True)
    batch = pad_histories([[5, 5, 5]], max_len=8)
    with torch.inference_mode():
        query = scorer.queries(scorer.hidden(batch), batch)[0]
    expected = scorer.embed.items.weight[5].detach().expand(3, -1)
    torch.testing.assert_close(query, expected)


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_training_loss_is_the_served_distributions_cross_entropy(variant: str) -> None:
    """Full softmax: the loss of [a, b] is -log of what serving gives b after [a], repeats too."""
    scorer = _scorer(seed=2, **VARIANTS[variant])
    pairs = [[3, 7], [5, 5], [9, 2, 9]]
    generator = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for session in pairs:
            loss = next_item_loss(
                scorer, pad_histories([session], max_len=8), negatives=0, generator=generator
            )
            served = [
                float(scorer.score_many(pad_histories([session[:n]], max_len=8))[0, session[n]])
                for n in range(1, len(session))
            ]
            assert float(loss) == pytest.approx(-sum(served) / len(served), abs=1e-4)


def test_weights_of_an_older_checkpoint_with_an_intent_head_still_load() -> None:
    scorer = _scorer()
    older = {**scorer.state_dict(), "intent_head.0.weight": torch.zeros(16, 16)}
    fresh = _scorer(seed=5)
    fresh.load_state_dict(older)
    assert torch.equal(fresh.embed.items.weight, scorer.embed.items.weight)
