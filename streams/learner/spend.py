"""The privacy a version the learner publishes records: its base version's spend plus its lineage's.

A version holds everything its base version learned, so it is DP-trained only if
the base version was and the learner ran DP-SGD; anything else is published with
``privacy`` null, the mark of a model that is not DP-trained. The two spends
compose by basic composition: epsilons add, and so do deltas.

The stream's part is the spend of the version's *lineage*: every DP step any learner
run took from the same base version, across restarts, rollbacks and forks. Each
version's ``stream_privacy`` records its lineage's root and the steps of each run
(:func:`lineage_runs` unites them over the store), and the accountant composes them
at the one delta (docs/privacy.md, "The learner's DP-SGD").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from model.training.update import AccountedSteps
from online_learning.errors import ModelRejected
from online_learning.manifest import read_meta
from online_learning.registry import ModelStore
from streams.errors import ConfigurationError

#: One learner run's DP steps: noise multiplier, sample rate, steps (what the run recorded last).
Runs = dict[str, tuple[float, float, int]]


def lineage_runs(store: ModelStore, meta: Mapping[str, Any], *, version: str) -> tuple[str, Runs]:
    """The lineage of ``version`` (``meta`` is its meta) and the DP runs its stored versions record.

    A rollback or a restart from an older version forks the lineage, and the
    versions of the other branch were released too, so the runs are united over
    every stored version of the lineage (each run at the most steps any of them
    records), not read from ``version``'s ancestry alone. A version pruned from the
    store takes its record with it, unless a later version of the same run is kept.

    Raises:
        ConfigurationError: ``meta`` holds a stream spend without its runs, whose
            steps cannot be composed with new ones.
    """
    stream = meta.get("stream_privacy")
    if stream is None:
        return version, {}
    if "runs" not in stream:
        raise ConfigurationError(
            f"{version} records a stream spend without its DP runs, so it cannot be composed "
            "with new steps: start the learner from a version without stream updates"
        )
    lineage = str(stream["lineage"])
    records = [stream]
    for info in store.versions():
        try:
            other = read_meta(info.version, info.path).get("stream_privacy")
        except ModelRejected:
            continue
        if other is not None and other.get("lineage") == lineage:
            records.append(other)
    runs: Runs = {}
    for record in records:
        for run, (sigma, rate, steps) in record.get("runs", {}).items():
            if run not in runs or steps > runs[run][2]:
                runs[run] = (float(sigma), float(rate), int(steps))
    return lineage, runs


def history_of(runs: Runs) -> list[AccountedSteps]:
    """The accountant history of ``runs``: each run's steps at its noise and sample rate.

    Examples:
        >>> history_of({"a": (1.0, 0.1, 30), "b": (2.0, 0.1, 5)})
        [(1.0, 0.1, 30), (2.0, 0.1, 5)]
    """
    return [entry for entry in runs.values() if entry[2] > 0]


def version_privacy(
    base: Mapping[str, Any] | None, *, base_version: str, learner: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    """``privacy`` of a version learned from ``base_version``, or None when it is not DP-trained.

    Args:
        base: the lineage root's ``privacy`` (None: it is not DP-trained).
        base_version: its id, recorded beside its spend.
        learner: what the lineage's DP-SGD spent so far, this run included
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
    # A lineage that took no step spent nothing: no delta either.
    delta = float(learner["delta"]) if learner["steps"] else 0.0
    return {
        "epsilon": float(base["epsilon"]) + float(learner["epsilon"]),
        "delta": float(base["delta"]) + delta,
        "accountant": learner["accountant"],
        "composition": "basic (base version + stream lineage)",
        "unit": learner["unit"],
        "base": {
            "version": base_version,
            "epsilon": float(base["epsilon"]),
            "delta": float(base["delta"]),
            "accountant": base.get("accountant"),
        },
        "learner": dict(learner),
    }
