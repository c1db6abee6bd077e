"""The privacy a version the learner publishes records: its base version's spend plus its own.

A version holds everything its base version learned, so it is DP-trained only if
the base version was and the learner ran DP-SGD; anything else is published with
``privacy`` null, the mark of a model that is not DP-trained. The two spends
compose by basic composition: epsilons add, and so do deltas.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def version_privacy(
    base: Mapping[str, Any] | None, *, base_version: str, learner: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    """``privacy`` of a version learned from ``base_version``, or None when it is not DP-trained.

    Args:
        base: the base version's ``privacy`` (None: it is not DP-trained).
        base_version: its id, recorded beside its spend.
        learner: what this learner's DP-SGD spent so far
            (``IncrementalTrainer.privacy_spent``; None: no DP-SGD).

    Returns:
        ``epsilon``, ``delta``, ``accountant``, ``composition``, ``unit``, and the two
        parts under ``base`` and ``learner``.

    Examples:
        >>> spent = {"epsilon": 0.5, "delta": 1e-6, "steps": 3, "accountant": "rdp",
        ...          "unit": "session"}
        >>> p = version_privacy({"epsilon": 1.0, "delta": 1e-6}, base_version="v1", learner=spent)
        >>> p["epsilon"], p["delta"], p["accountant"], p["base"]["version"]
        (1.5, 2e-06, 'rdp', 'v1')
        >>> version_privacy(None, base_version="v1", learner=spent) is None
        True
    """
    if base is None or learner is None:
        return None
    # A run that took no step spent nothing: no delta either.
    delta = float(learner["delta"]) if learner["steps"] else 0.0
    return {
        "epsilon": float(base["epsilon"]) + float(learner["epsilon"]),
        "delta": float(base["delta"]) + delta,
        "accountant": learner["accountant"],
        "composition": "basic (base version + learner)",
        "unit": learner["unit"],
        "base": {
            "version": base_version,
            "epsilon": float(base["epsilon"]),
            "delta": float(base["delta"]),
            "accountant": base.get("accountant"),
        },
        "learner": dict(learner),
    }
