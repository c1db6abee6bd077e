"""Growing the item table keeps every old row, index and Adam moment, and training goes on."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from model.batches import pad_histories
from model.config import ScorerConfig
from model.scorer import SequenceScorer
from model.training.grow import grow_items
from model.training.update import incremental_step

SEQUENCES = [[1, 2, 3], [4, 5], [2, 3, 4, 5]]


def _trained() -> tuple[SequenceScorer, torch.optim.Adam]:
    torch.manual_seed(0)
    model = SequenceScorer(ScorerConfig(n_items=6, d_model=8, n_heads=2, max_len=8))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):
        incremental_step(
            model, optimizer, SEQUENCES, negatives=0, generator=torch.Generator().manual_seed(0)
        )
    return model, optimizer


def test_growing_keeps_old_rows_indices_and_adam_state() -> None:
    model, optimizer = _trained()
    old = model.embed.items.weight
    weights, state, config = old.detach().clone(), dict(optimizer.state[old]), model.config
    position = optimizer.param_groups[0]["params"].index(old)
    grow_items(model, optimizer, 9, generator=torch.Generator().manual_seed(0))
    new = model.embed.items.weight
    assert model.config == dataclasses.replace(config, n_items=9)
    assert model.embed.items.padding_idx == 0 and not new[0].any()
    assert torch.equal(new[:6], weights) and model.item_table().shape == (9, 8)
    rms = float(weights[1:].pow(2).mean().sqrt())
    assert 0.3 * rms < float(new.detach()[6:].pow(2).mean().sqrt()) < 3 * rms  # the trained scale
    assert optimizer.param_groups[0]["params"][position] is new
    assert all(param is not old for group in optimizer.param_groups for param in group["params"])
    assert old not in optimizer.state and torch.equal(optimizer.state[new]["step"], state["step"])
    for moment in ("exp_avg", "exp_avg_sq"):
        assert torch.equal(optimizer.state[new][moment][:6], state[moment])
        assert not optimizer.state[new][moment][6:].any()

    generator = torch.Generator().manual_seed(1)
    loss = incremental_step(model, optimizer, [[1, 7], [8, 2, 6]], negatives=0, generator=generator)
    assert math.isfinite(loss) and not new[0].any()
    assert optimizer.state[new]["exp_avg_sq"][6:].all()  # the full softmax reaches every row
    with torch.inference_mode():
        scores = model.score_many(pad_histories([[7, 8]], max_len=8))
    assert scores.shape == (1, 9)


def test_a_new_row_moves_with_the_next_step() -> None:
    model, optimizer = _trained()
    grow_items(model, optimizer, 7, generator=torch.Generator().manual_seed(0))
    before = model.embed.items.weight.detach().clone()
    incremental_step(
        model, optimizer, [[1, 6]], negatives=0, generator=torch.Generator().manual_seed(0)
    )
    assert not torch.equal(model.embed.items.weight[6], before[6])


def test_growing_to_the_same_size_changes_nothing_and_shrinking_is_refused() -> None:
    model, optimizer = _trained()
    old = model.embed.items.weight
    grow_items(model, optimizer, 6, generator=torch.Generator())
    assert model.embed.items.weight is old and model.config.n_items == 6
    with pytest.raises(ValueError, match="shrink"):
        grow_items(model, optimizer, 5, generator=torch.Generator())
