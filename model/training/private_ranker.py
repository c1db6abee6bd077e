"""The served ranker of a DP run, and the spend of everything a private checkpoint releases.

A non-private run mixes its transformer with session-kNN over the training
sessions, chosen on exact validation metrics; a private run may release neither.
:func:`choose_private_ranker` gives the chosen checkpoint instead

- a **memory** part: which items the training sessions hold near which, released
  once per run with OpenDP's Gaussian threshold (:mod:`model.training.transitions`,
  ``dp_memory_epsilon``), stored in ``ranker.npz`` and reused on resume;
- a **mix** of transformer, memory and recent items chosen on the validation
  sessions with report-noisy-max (:func:`model.evaluation.tuning.choose_weights_privately`).

Accounting (:func:`composed_privacy`): the training part's sessions pay for the
vocabulary, DP-SGD and the memory (basic composition: epsilons and deltas add);
the held-out validation sessions pay for each epoch's released metrics, the mix
choice and the click calibration (:mod:`model.training.calibration`),
``dp_validation_epsilon`` in all. The two parts hold disjoint sessions (the
split is by position), so by parallel composition a session is covered by the
larger of the two.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import scipy.sparse as sp

from model.checkpoint import best_checkpoint, load_checkpoint, save_ranker
from model.evaluation.tuning import choose_weights_privately
from model.ranking.parts import RankerParts
from model.ranking.transitions import TransitionRanker
from model.training.train import TrainConfig
from model.training.transitions import private_transitions

log = logging.getLogger(__name__)

#: The memory release of a run, kept in its folder so a resumed run does not release again.
MEMORY_FILE = "memory.npz"
MEMORY_SPEND_FILE = "memory.json"


def validation_share(config: TrainConfig) -> float:
    """Epsilon of one release on the validation sessions: each epoch's metrics, the mix, the
    click calibration."""
    return config.dp_validation_epsilon / (config.epochs + 2)


def choose_private_ranker(
    run_dir: Path,
    train: list[list[int]],
    cases: tuple[list[list[int]], Any],
    config: TrainConfig,
) -> dict[str, Any] | None:
    """Release the run's memory (once), choose the mix privately, store both with the chosen epoch.

    Returns the chosen checkpoint's ``privacy``, everything composed (None: no checkpoint).

    Args:
        run_dir: the DP run's folder.
        train: the training part's sessions in the run's item indices.
        cases: validation prefixes and targets, one case a held-out session.
        config: the run's settings (``dp_memory_epsilon``, ``dp_delta``,
            ``dp_validation_epsilon``).
    """
    chosen = best_checkpoint(run_dir)
    if chosen is None:
        return None
    checkpoint = load_checkpoint(chosen)
    if checkpoint.ranking is not None:  # chosen once: choosing again would spend again
        return dict(checkpoint.meta["privacy"])
    memory, spend = _memory(run_dir, train, len(checkpoint.vocab), config)
    prefixes, targets = cases
    weights, _ = choose_weights_privately(
        checkpoint.model,
        TransitionRanker(memory),
        prefixes,
        targets,
        epsilon=validation_share(config),
    )
    parts = RankerParts(weights=weights, transitions=memory)
    save_ranker(chosen, parts)
    meta_path = chosen / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["privacy"] = composed_privacy(
        meta["privacy"],
        vocabulary=None,
        memory=spend,
        validation_releases=int(meta["epoch"]) + 1,
        config=config,
    )
    meta_path.write_text(json.dumps(meta, indent=2))
    log.info("private served ranker of %s: %s, %s", chosen, weights, meta["privacy"]["epsilon"])
    return dict(meta["privacy"])


def _memory(
    run_dir: Path, train: list[list[int]], n_items: int, config: TrainConfig
) -> tuple[sp.csr_matrix, dict[str, Any]]:
    """The run's released transitions: released now, or read back from an earlier attempt."""
    path, spend_path = run_dir / MEMORY_FILE, run_dir / MEMORY_SPEND_FILE
    if path.is_file() and spend_path.is_file():
        return sp.load_npz(path).tocsr(), json.loads(spend_path.read_text())
    memory, spend = private_transitions(
        train, n_items=n_items, epsilon=config.dp_memory_epsilon, delta=config.dp_delta
    )
    sp.save_npz(path, memory)
    spend_path.write_text(json.dumps(spend, indent=2))
    log.info("DP memory: %d item pairs released (%s)", memory.nnz, spend)
    return memory, spend


def composed_privacy(
    privacy: dict[str, Any],
    *,
    vocabulary: dict[str, Any] | None,
    memory: dict[str, Any] | None,
    validation_releases: int,
    config: TrainConfig,
) -> dict[str, Any]:
    """Everything a private checkpoint released, composed into its ``privacy``.

    Args:
        privacy: DP-SGD's spend (Opacus' accountant), or a spend composed before.
        vocabulary: the DP vocabulary's spend (None: the one ``privacy`` holds, if any).
        memory: the memory release's spend, if released.
        validation_releases: releases on the validation sessions so far (one per
            epoch's metrics, one for the mix choice, one for the calibration), each
            :func:`validation_share`.
        config: the run's settings.
    """
    sgd_epsilon = float(privacy.get("sgd_epsilon", privacy["epsilon"]))
    sgd_delta = float(privacy.get("sgd_delta", privacy["delta"]))
    vocabulary = vocabulary or privacy.get("vocabulary")
    train_epsilon, train_delta = sgd_epsilon, sgd_delta
    if vocabulary is not None:
        train_epsilon += float(vocabulary["epsilon"])
        train_delta += float(vocabulary["delta"])
    if memory is not None:
        train_epsilon += float(memory["epsilon"])
        train_delta += float(memory["delta"])
    validation_epsilon = validation_releases * validation_share(config)
    return {
        **privacy,
        "epsilon": max(train_epsilon, validation_epsilon),
        "delta": train_delta,
        "sgd_epsilon": sgd_epsilon,
        "sgd_delta": sgd_delta,
        "training_part": {"epsilon": train_epsilon, "delta": train_delta},
        "validation_part": {"epsilon": validation_epsilon, "releases": validation_releases},
        **({"vocabulary": vocabulary} if vocabulary is not None else {}),
        **({"memory": memory} if memory is not None else {}),
        "composition": (
            "basic within the training part (vocabulary + DP-SGD + memory) and within the "
            "validation part (epoch metrics + mix choice + calibration); parallel across the two"
        ),
    }
