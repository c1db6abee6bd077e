"""The vocabulary of a DP-trained model, chosen with differential privacy.

A model can score only the items in its vocabulary, so the vocabulary itself
reveals which items were in the training sessions: one shopper's rare item would
show. Under DP training it is therefore released like any count: each session
adds +1 to at most ``max_items`` distinct items (its first ones), and OpenDP's
threshold mechanism (:mod:`model.threshold`) keeps the items whose noisy number
of sessions passes a threshold, so an item of one session is kept with
probability at most ``delta``. Its (epsilon, delta) adds to the DP-SGD spend in
the checkpoint's ``privacy`` (basic composition).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from model.threshold import ThresholdCounts
from model.vocab import ItemVocab


def private_vocabulary(
    sessions: Sequence[Sequence[str]], *, epsilon: float, delta: float, max_items: int
) -> tuple[ItemVocab, dict[str, Any]]:
    """The items many sessions hold, released once with (epsilon, delta)-DP per session.

    Args:
        sessions: the training sessions as item ids.
        epsilon: the release's epsilon.
        delta: the chance that an item of a single session is kept.
        max_items: distinct items one session adds to (its first ones).

    Returns:
        The vocabulary (most frequent first) and its spend for the checkpoint's meta.
    """
    counts = ThresholdCounts(max_keys=max_items)
    for session in sessions:
        for item in list(dict.fromkeys(session))[:max_items]:
            counts.add(item)
    released = counts.release(epsilon=epsilon, delta=delta)
    kept = sorted(released, key=lambda item: (-released[item], item))
    spend = {
        "epsilon": epsilon,
        "delta": delta,
        "max_items_per_session": max_items,
        "items": len(kept),
        "mechanism": "OpenDP Laplace threshold",
    }
    return ItemVocab.build([kept]), spend
