"""One incremental step of the scorer: a gradient step on a micro-batch of sequences.

``online_learning`` decides when to call it and on what (new sessions mixed
with a replay buffer); this module only knows how to take the step, with the
same next-item loss as offline training (``model.train.next_item_loss``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from model.batches import pad_histories
from model.scorer import SequenceScorer
from model.train import next_item_loss


def incremental_step(
    model: SequenceScorer,
    optimizer: torch.optim.Optimizer,
    sequences: Sequence[Sequence[int]],
    *,
    negatives: int,
    generator: torch.Generator,
) -> float:
    """One optimizer step on ``sequences`` (item indices, each >= 2 long); returns the loss.

    The model is left in eval mode, ready to score.
    """
    if not sequences or any(len(sequence) < 2 for sequence in sequences):
        raise ValueError("every sequence needs at least two items")
    device = next(model.parameters()).device
    batch = pad_histories(sequences, max_len=model.config.max_len).to(device)
    model.train()
    loss = next_item_loss(model, batch, negatives=negatives, generator=generator)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()  # type: ignore[no-untyped-call]
    optimizer.step()
    model.eval()
    return float(loss.detach())
