"""A run's click and purchase probabilities by rank, fitted on its validation split.

``intentstream train`` ends by ranking the validation prefixes with the chosen
epoch's served ranker (its mix included, as workers rank) to the depth of the
sponsored items' list, and noting where the shopper's next item was (a click)
and which listed items they bought later in the session (purchases):
:func:`calibrate_run` fits a :class:`~model.calibration.ClickCalibrator` on that
and stores it with the checkpoint. A DP run fits it from counts released with
noise, on one case per validation session, at one validation release's epsilon
(:mod:`model.training.private_ranker`).
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.calibration import (
    RANK_EDGES,
    ClickCalibrator,
    RankOutcomes,
    fit_calibrator,
    fit_private_calibrator,
)
from model.checkpoint import best_checkpoint, load_checkpoint, save_calibrator
from model.ranking.knn import item_matrix
from model.ranking.ranker import ServedRanker, served_ranker
from model.training.private_ranker import composed_privacy, validation_share
from model.training.train import TrainConfig

log = logging.getLogger(__name__)

PURCHASE = "purchase"
#: The prior of the stream's purchase rate per event type (2 %, as
#: ``model.serving.baseline.NextPurchaseRate``, which workers serve as intent).
PRIOR_PURCHASES, PRIOR_EVENTS = 1.0, 50.0
CHUNK = 1024


@dataclass(frozen=True)
class CalibrationCases:
    """Validation prefixes, their next items, what was bought later, the shopper's intent.

    Attributes:
        prefixes: item indices, none empty.
        targets: ``(C,)`` int64 next items.
        bought: per case, the items bought after the prefix in the same session.
        intent: per case, the purchase intent after the prefix's last event; empty
            when the data have no event types.
    """

    prefixes: list[list[int]]
    targets: torch.Tensor
    bought: list[list[int]]
    intent: list[float]


def intent_by_type(types: Sequence[Sequence[str]]) -> dict[str, float]:
    """P(the next event of the session is a purchase | this event's type), with the prior.

    What the worker's purchase rate per event type estimates from the stream; the
    intent a calibrator's purchase lift is fitted against.

    Examples:
        >>> rates = intent_by_type([["view", "add_to_cart", "purchase"], ["view", "view"]])
        >>> round(rates["add_to_cart"], 4), round(rates["view"], 4)
        (0.0392, 0.0192)
    """
    events: dict[str, int] = {}
    purchases: dict[str, int] = {}
    for session in types:
        for current, following in itertools.pairwise(session):
            events[current] = events.get(current, 0) + 1
            purchases[current] = purchases.get(current, 0) + (following == PURCHASE)
    return {
        kind: (purchases[kind] + PRIOR_PURCHASES) / (count + PRIOR_EVENTS)
        for kind, count in events.items()
    }


def rank_outcomes(ranker: ServedRanker, cases: CalibrationCases, *, depth: int) -> RankOutcomes:
    """Where each case's next item and bought items stood in its top ``depth`` list."""
    lengths, clicks, purchase_ranks, purchase_cases = [], [], [], []
    for start in range(0, len(cases.prefixes), CHUNK):
        with torch.inference_mode():
            values, items = ranker.top_k(cases.prefixes[start : start + CHUNK], depth)
        shown = torch.isfinite(values)
        items = torch.where(shown, items, 0)  # not ranked: matches no item
        targets = cases.targets[start : start + CHUNK]
        hit = (items == targets[:, None]) & (targets[:, None] != 0)
        lengths.append(shown.sum(dim=1))
        clicks.append(torch.where(hit.any(dim=1), hit.int().argmax(dim=1), -1))
        for row, bought in enumerate(cases.bought[start : start + CHUNK]):
            if bought:
                found = torch.isin(items[row], torch.tensor(bought, dtype=items.dtype))
                ranks = found.nonzero().ravel().tolist()
                purchase_ranks += ranks
                purchase_cases += [start + row] * len(ranks)
    return RankOutcomes(
        lengths=torch.cat(lengths).numpy().astype(np.int64),
        clicks=torch.cat(clicks).numpy().astype(np.int64),
        purchase_ranks=np.asarray(purchase_ranks, dtype=np.int64),
        purchase_cases=np.asarray(purchase_cases, dtype=np.int64),
        intent=np.asarray(cases.intent, dtype=np.float64) if cases.intent else None,
    )


def calibrate_run(
    run_dir: Path,
    cases: CalibrationCases,
    config: TrainConfig,
    *,
    train_part: Sequence[Sequence[int]],
) -> dict[str, Any] | None:
    """Fit the chosen epoch's calibrator on ``cases`` and store it there.

    The served ranker's session-kNN index holds every training session, the
    validation ones too: ranking them with it would find each case's own session
    and overstate the click rates (on the RetailRocket sample about twice as many
    clicks at rank 2). So the cases are ranked with kNN over ``train_part`` only,
    as the mix was chosen.

    A DP run (``config.dp_epsilon``) takes one case per validation session, fits
    from noisy counts and adds the release to the checkpoint's ``privacy``; it
    fits once (a resumed run keeps what it released). Nothing is fitted without
    cases.

    Returns:
        The chosen checkpoint's ``privacy`` (None: not a DP run, or no checkpoint).
    """
    chosen = best_checkpoint(run_dir)
    if chosen is None:
        return None
    checkpoint = load_checkpoint(chosen)
    privacy = checkpoint.meta.get("privacy")
    if not cases.prefixes or (privacy is not None and "calibration" in privacy):
        return privacy
    parts = checkpoint.ranking
    if parts is not None and parts.sessions is not None:
        index = item_matrix(train_part, n_items=len(checkpoint.vocab))
        checkpoint = replace(checkpoint, ranking=replace(parts, sessions=index))
    depth = min(RANK_EDGES[-1], len(checkpoint.vocab) - 1)
    outcomes = rank_outcomes(served_ranker(checkpoint), cases, depth=depth)
    calibrator: ClickCalibrator | None
    if privacy is None:
        calibrator = fit_calibrator(outcomes)
    else:
        epsilon = validation_share(config)
        calibrator, spend = fit_private_calibrator(outcomes, epsilon=epsilon, list_length=depth)
        privacy = _compose(chosen, spend, config)
    if calibrator is not None:
        save_calibrator(chosen, calibrator)
    log.info("calibrator of %s: %s", chosen, calibrator)
    return privacy


def _compose(chosen: Path, spend: dict[str, Any], config: TrainConfig) -> dict[str, Any]:
    """The checkpoint's ``privacy`` with the calibration's release added (validation part)."""
    meta_path = chosen / "meta.json"
    meta = json.loads(meta_path.read_text())
    privacy = composed_privacy(
        meta["privacy"],
        vocabulary=None,
        memory=meta["privacy"].get("memory"),
        validation_releases=int(meta["epoch"]) + 2,
        config=config,
    )
    meta["privacy"] = {**privacy, "calibration": spend}
    meta_path.write_text(json.dumps(meta, indent=2))
    return dict(meta["privacy"])
