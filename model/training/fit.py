"""One training run: data set in, versioned checkpoints and a quality report out.

``intentstream train DATA --out RUN`` calls :func:`fit`. Epochs are judged on a
validation split cut from the training data (its last 10 % of sessions, expanded
into prefixes), never on the test cases; the test cases are scored once, by
``intentstream evaluate``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from model.checkpoint import fingerprint, latest_checkpoint, save_checkpoint
from model.config import ScorerConfig
from model.evaluation.evaluate import load_protocol
from model.evaluation.metrics import RankingMetrics
from model.scorer import PrefixRanker, SequenceScorer
from model.sessions import prefix_cases
from model.training.dp_sgd import trained_parameters
from model.training.private import train_private
from model.training.train import EpochReport, TrainConfig, train

log = logging.getLogger(__name__)

VALIDATION_FRACTION = 0.1
#: Validation prefixes scored after each epoch (a fixed, seeded subset keeps it quick).
VALIDATION_CASES = 20_000


@dataclass(frozen=True)
class ValidationSplit:
    """Training sequences, and prefix cases cut from the held-out last sessions."""

    train: list[list[int]]
    prefixes: list[list[int]]
    targets: torch.Tensor


def validation_split(sequences: Sequence[list[int]], *, seed: int) -> ValidationSplit:
    """Hold out the last 10 % of sessions; a seeded subset of their prefixes validates."""
    cut = len(sequences) - round(len(sequences) * VALIDATION_FRACTION)
    held_out = list(prefix_cases(sequences[cut:]))
    generator = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(held_out), generator=generator)[:VALIDATION_CASES].tolist()
    return ValidationSplit(
        train=list(sequences[:cut]),
        prefixes=[held_out[j][0] for j in pick],
        targets=torch.tensor([held_out[j][1] for j in pick]),
    )


def pick_device() -> torch.device:
    """The GPU when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def fit(
    data: Path,
    run_dir: Path,
    *,
    train_config: TrainConfig,
    scorer_options: dict[str, Any] | None = None,
    progress: bool = True,
    device: torch.device | None = None,
) -> list[EpochReport]:
    """Train a scorer on ``data`` into ``run_dir``, resuming from its latest checkpoint.

    With ``train_config.dp_epsilon`` set, trains with DP-SGD (:mod:`model.training.private`) and
    each checkpoint's meta records the privacy spent (``"privacy"``; null otherwise).
    ``device`` defaults to :func:`pick_device`.
    """
    torch.manual_seed(train_config.seed)
    protocol = load_protocol(data)
    split = validation_split(protocol.train, seed=train_config.seed)
    sequences = [s for s in split.train if len(s) >= 2]
    val_prefixes, val_targets = split.prefixes, split.targets
    device = device or pick_device()
    config = ScorerConfig(n_items=len(protocol.vocab), **(scorer_options or {}))
    model = SequenceScorer(config).to(device)
    private = train_config.dp_epsilon is not None
    parameters = trained_parameters(model) if private else list(model.parameters())
    optimizer = torch.optim.Adam(parameters, lr=train_config.learning_rate)
    start_epoch, resumed_privacy = _maybe_resume(run_dir, model, optimizer, config, private)
    meta: dict[str, Any] = {
        "data": str(data),
        "data_name": protocol.name,
        "data_fingerprint": fingerprint(data),
        "train_config": asdict(train_config),
        "device": device.type,
        "validation": {"fraction": VALIDATION_FRACTION, "cases": len(val_prefixes)},
    }

    def validate(model: SequenceScorer) -> dict[str, float]:
        metrics = RankingMetrics()
        ranker = PrefixRanker(model)
        for i in range(0, len(val_prefixes), 1024):
            metrics.update(ranker.score_many(val_prefixes[i : i + 1024]), val_targets[i : i + 1024])
        return metrics.result()

    def checkpoint(report: EpochReport, opt: torch.optim.Optimizer) -> None:
        history = meta.setdefault("history", [])
        history.append(
            {
                "epoch": report.epoch,
                "loss": report.loss,
                "seconds": report.seconds,
                "validation": report.metrics,
                **({"epsilon": report.privacy["epsilon"]} if report.privacy else {}),
            }
        )
        path = save_checkpoint(
            run_dir,
            epoch=report.epoch,
            model=model,
            optimizer=opt,
            vocab=protocol.vocab,
            meta={**meta, "metrics": report.metrics, "privacy": report.privacy},
        )
        log.info("checkpoint %s", path)

    if private:
        return train_private(
            model,
            sequences,
            train_config,
            optimizer=optimizer,
            start_epoch=start_epoch,
            resumed=resumed_privacy,
            validate=validate,
            on_epoch=checkpoint,
            progress=progress,
        )
    return train(
        model,
        sequences,
        train_config,
        optimizer=optimizer,
        start_epoch=start_epoch,
        validate=validate,
        on_epoch=checkpoint,
        progress=progress,
    )


def _maybe_resume(
    run_dir: Path,
    model: SequenceScorer,
    optimizer: torch.optim.Optimizer,
    config: ScorerConfig,
    private: bool,
) -> tuple[int, dict[str, Any] | None]:
    """Epochs done and the privacy meta of the latest checkpoint (0, None: none yet)."""
    latest = latest_checkpoint(run_dir)
    if latest is None:
        return 0, None
    meta = json.loads((latest / "meta.json").read_text())
    if meta["config"] != config.to_dict():
        raise ValueError(f"{run_dir} holds a run with another model config; use a new --out")
    privacy = meta.get("privacy")
    if (privacy is not None) != private:
        # Mixing private and non-private epochs would leave no valid guarantee.
        kind = "a differentially private" if privacy is not None else "a non-private"
        raise ValueError(f"{run_dir} holds {kind} run; resume it as such or use a new --out")
    model.load_state_dict(torch.load(latest / "weights.pt", weights_only=True))
    optimizer.load_state_dict(torch.load(latest / "optimizer.pt", weights_only=True))
    log.info("resuming %s after epoch %d", run_dir, meta["epoch"])
    return int(meta["epoch"]), privacy
