"""Growing a learning scorer's item table: new rows appended, the optimizer's state kept.

A shop's stream brings new items all the time, and the item table
(``model.embed.items``, also the tied output table of
:meth:`model.scorer.SequenceScorer.item_table`) has one row per item. Rows are
only appended, so every existing index, weight and optimizer moment stays as it
was, and the optimizer is re-pointed at the grown Parameter rather than rebuilt:
a fresh Adam would reset every moment of the whole model and change how the
next updates move it.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from model.scorer import SequenceScorer


def grow_items(
    model: SequenceScorer,
    optimizer: torch.optim.Optimizer,
    n_items: int,
    *,
    generator: torch.Generator,
) -> None:
    """Give ``model``'s item table ``n_items`` rows (padding included), in place.

    New rows are drawn from N(0, s^2), s the root mean square of the existing
    item rows. A random direction has a cosine near 0 to every user's state, so a
    new item ranks mid-catalogue until updates train its row (the mean of the
    existing rows would point at the popular items and push the untrained item on
    everyone), and the existing rows' scale keeps its input embedding comparable to
    the others' in the sum before the LayerNorm. Its optimizer moments start at
    zero; Adam's step count is per table, so the bias correction of the new rows
    is already near 1 and their first steps are a few times ``lr`` (they move fast
    at first, which a new item needs).

    Args:
        model: the scorer; its item table and ``config.n_items`` are replaced.
        optimizer: the optimizer over the model's parameters (e.g. Adam); its state
            of the table's shape (``exp_avg``, ``exp_avg_sq``) is zero-padded and
            moved, with its param group's entry, to the grown Parameter.
        n_items: rows wanted, at least the current number.
        generator: draws the new rows (a CPU generator).

    Raises:
        ValueError: ``n_items`` is below the current number of rows.

    Examples:
        >>> from model.config import ScorerConfig
        >>> model = SequenceScorer(ScorerConfig(n_items=4, d_model=8, n_heads=2))
        >>> optimizer = torch.optim.Adam(model.parameters())
        >>> grow_items(model, optimizer, 6, generator=torch.Generator().manual_seed(0))
        >>> model.config.n_items, tuple(model.item_table().shape)
        (6, (6, 8))
    """
    table = model.embed.items
    old = table.weight
    rows = old.shape[0]
    if n_items < rows:
        raise ValueError(f"the item table has {rows} rows: it cannot shrink to {n_items}")
    if n_items == rows:
        return
    with torch.no_grad():
        scale = float(old[1:].pow(2).mean().sqrt())  # row 0 is padding (zeros)
        fresh = scale * torch.randn(n_items - rows, old.shape[1], generator=generator)
        grown = torch.cat([old, fresh.to(old.device, old.dtype)])
    new = nn.Parameter(grown, requires_grad=old.requires_grad)
    table.weight = new
    table.num_embeddings = n_items
    model.config = dataclasses.replace(model.config, n_items=n_items)
    _repoint(optimizer, old, new)


def _repoint(optimizer: torch.optim.Optimizer, old: torch.Tensor, new: nn.Parameter) -> None:
    """Make ``optimizer`` update ``new`` instead of ``old``, its per-element state zero-padded."""
    for group in optimizer.param_groups:
        group["params"] = [new if param is old else param for param in group["params"]]
    state = optimizer.state.pop(old, None)
    if state is None:  # no step taken yet
        return
    extra = new.shape[0] - old.shape[0]
    optimizer.state[new] = {
        key: F.pad(value, (0, 0, 0, extra))
        if isinstance(value, torch.Tensor) and value.shape == old.shape
        else value
        for key, value in state.items()
    }
