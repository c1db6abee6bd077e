"""Synthetic sessions with a learnable pattern, shared by the model and learner tests."""

from __future__ import annotations

import random


def walks(count: int, rng: random.Random, *, n_items: int, step: int = 1) -> list[list[int]]:
    """``count`` 4-item sessions walking item k -> k + step (mod), from random starts.

    Item indices run 1 .. n_items - 1 (0 is padding), one ``rng.randrange`` per session.
    """
    out = []
    for _ in range(count):
        start = rng.randrange(1, n_items)
        out.append([1 + (start - 1 + step * j) % (n_items - 1) for j in range(4)])
    return out
