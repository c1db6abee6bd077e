"""A history that holds every item leaves the explore softmax nothing: no NaN anywhere.

A small shop's catalogue makes this common; once, the learner published a model whose
every weight was NaN, and workers served its NaN scores.
"""

from __future__ import annotations

import torch

from model.batches import pad_histories
from model.config import ScorerConfig
from model.scorer import SequenceScorer
from model.training.train import next_item_loss
from model.training.update import incremental_step

N_ITEMS = 4  # three items and padding


def _model() -> SequenceScorer:
    torch.manual_seed(0)
    return SequenceScorer(ScorerConfig(n_items=N_ITEMS, d_model=8, n_heads=2, max_len=8))


def test_training_on_histories_that_hold_every_item_stays_finite() -> None:
    model = _model().train()
    batch = pad_histories([[1, 2, 3, 1, 2, 3], [3, 2, 1, 3]], max_len=8)
    for negatives in (0, 16):
        loss = next_item_loss(model, batch, negatives=negatives, generator=torch.Generator())
        assert torch.isfinite(loss)
        model.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_scores_after_a_history_that_holds_every_item_are_finite() -> None:
    model = _model().eval()
    with torch.inference_mode():
        scores = model.score_many(pad_histories([[1, 2, 3]], max_len=8))
    assert not scores.isnan().any()
    assert torch.isfinite(scores[0, 1:]).any()  # the pointer still ranks the history's items


def test_a_step_whose_loss_is_not_finite_changes_no_weight() -> None:
    model = _model()
    with torch.no_grad():
        model.embed.items.weight[2] = float("nan")
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    loss = incremental_step(
        model, optimizer, [[1, 2], [2, 3]], negatives=0, generator=torch.Generator()
    )
    assert loss != loss  # NaN
    for name, p in model.named_parameters():
        assert torch.equal(p.nan_to_num(), before[name].nan_to_num()), name
