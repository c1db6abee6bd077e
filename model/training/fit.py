"""One training run: data set in, versioned checkpoints and a quality report out.

``intentstream train DATA --out RUN`` calls :func:`fit`. Epochs are judged on a
validation split cut from the training data (its last 10 % of sessions, expanded
into prefixes), never on the test cases; the test cases are scored once, by
``intentstream evaluate``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from model.checkpoint import (
    best_checkpoint,
    fingerprint,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    save_ranker,
)
from model.config import ScorerConfig
from model.errors import TrainingDataError
from model.evaluation.evaluate import load_protocol
from model.evaluation.metrics import MISS_RANK, RankingMetrics
from model.evaluation.tuning import choose_weights
from model.ranking.knn import SessionKNN, item_matrix
from model.ranking.parts import RankerParts
from model.scorer import PrefixRanker, SequenceScorer
from model.sessions import prefix_cases
from model.training.calibration import (
    PRIOR_EVENTS,
    PRIOR_PURCHASES,
    PURCHASE,
    CalibrationCases,
    calibrate_run,
    intent_by_type,
)
from model.training.dp_sgd import trained_parameters
from model.training.private import train_private
from model.training.private_ranker import (
    choose_private_ranker,
    composed_privacy,
    validation_share,
)
from model.training.train import EpochReport, TrainConfig, ValidationCurve, train
from model.training.vocabulary import private_vocabulary
from model.vocab import ItemVocab

log = logging.getLogger(__name__)

VALIDATION_FRACTION = 0.1
#: What DP runs build, whatever the options: the architecture their quality was
#: measured with (no repeat head: the per-session loss does not train one).
DP_ARCHITECTURE: dict[str, Any] = {"repeat": False, "item_readout": False}
#: DP runs' defaults, which a run's own options override: the width their quality was
#: measured at (docs/privacy.md); most of DP-SGD's noise goes into the item table.
DP_DEFAULTS: dict[str, Any] = {"d_model": 128}
#: Validation prefixes scored after each epoch (a fixed, seeded subset keeps it quick).
VALIDATION_CASES = 20_000


@dataclass(frozen=True)
class ValidationSplit:
    """Training sequences, and prefix cases cut from the held-out last sessions.

    ``owners`` names each case's held-out session, so a DP choice can take one
    case a session (:meth:`one_per_session`). ``bought`` (the items bought after
    each prefix in its session) and ``intent`` (the purchase intent after its
    last event) label the cases for the click calibration; both are empty when
    the data have no event types.
    """

    train: list[list[int]]
    prefixes: list[list[int]]
    targets: torch.Tensor
    owners: list[int]
    bought: list[list[int]] = field(default_factory=list)
    intent: list[float] = field(default_factory=list)

    def picked(self, *, one_per_session: bool) -> list[int]:
        """Positions of the cases to judge on: every one, or each session's first."""
        if not one_per_session:
            return list(range(len(self.prefixes)))
        first: dict[int, int] = {}
        for position, owner in enumerate(self.owners):
            first.setdefault(owner, position)
        return list(first.values())

    def one_per_session(self) -> tuple[list[list[int]], torch.Tensor]:
        """The first picked case of each held-out session: one session weighs one case."""
        picked = self.picked(one_per_session=True)
        return [self.prefixes[i] for i in picked], self.targets[picked]

    def calibration_cases(self, positions: Sequence[int]) -> CalibrationCases:
        """The cases at ``positions`` with their purchase labels and intents."""
        return CalibrationCases(
            prefixes=[self.prefixes[i] for i in positions],
            targets=self.targets[list(positions)],
            bought=[self.bought[i] for i in positions] if self.bought else [[] for _ in positions],
            intent=[self.intent[i] for i in positions] if self.intent else [],
        )

    def recoded(self, old: ItemVocab, new: ItemVocab) -> ValidationSplit:
        """The same split in ``new``'s indices; items ``new`` lacks are dropped (targets: 0)."""
        table = [new.index.get(item, 0) for item in old.ids]
        return ValidationSplit(
            train=[[table[i] for i in s if table[i]] for s in self.train],
            prefixes=[[table[i] for i in p if table[i]] for p in self.prefixes],
            targets=torch.tensor([table[int(t)] for t in self.targets], dtype=torch.int64),
            owners=self.owners,
            bought=[[table[i] for i in items if table[i]] for items in self.bought],
            intent=self.intent,
        )


def validation_split(
    sequences: Sequence[list[int]],
    *,
    seed: int,
    types: Sequence[Sequence[str]] = (),
) -> ValidationSplit:
    """Hold out the last 10 % of sessions; a seeded subset of their prefixes validates.

    With ``types`` (each sequence's event types), each case also gets what was
    bought after its prefix and the intent the training part's purchase rates give
    its last event.
    """
    cut = len(sequences) - round(len(sequences) * VALIDATION_FRACTION)
    held_out = [
        (prefix, target, owner)
        for owner, session in enumerate(sequences[cut:])
        for prefix, target in prefix_cases([session])
    ]
    generator = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(held_out), generator=generator)[:VALIDATION_CASES].tolist()
    bought: list[list[int]] = []
    intent: list[float] = []
    if types:
        rates = intent_by_type(types[:cut])
        for prefix, _, owner in (held_out[j] for j in pick):
            session, kinds = sequences[cut + owner], types[cut + owner]
            later = range(len(prefix), len(session))
            bought.append([session[i] for i in later if kinds[i] == PURCHASE])
            intent.append(rates.get(kinds[len(prefix) - 1], PRIOR_PURCHASES / PRIOR_EVENTS))
    return ValidationSplit(
        train=list(sequences[:cut]),
        prefixes=[held_out[j][0] for j in pick],
        targets=torch.tensor([held_out[j][1] for j in pick]),
        owners=[held_out[j][2] for j in pick],
        bought=bought,
        intent=intent,
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
    split = validation_split(protocol.train, seed=train_config.seed, types=protocol.train_types)
    private = train_config.dp_epsilon is not None
    vocab, vocab_spend = protocol.vocab, None
    if private:
        vocab, vocab_spend = _private_vocabulary(run_dir, protocol.vocab, split, train_config)
        split = split.recoded(protocol.vocab, vocab)
    sequences = [s for s in split.train if len(s) >= 2]
    # A private run releases metrics per validation session: one case each.
    picked = split.picked(one_per_session=private)
    val_prefixes, val_targets = [split.prefixes[i] for i in picked], split.targets[picked]
    device = device or pick_device()
    options = {
        **(DP_DEFAULTS if private else {}),
        **(scorer_options or {}),
        **(DP_ARCHITECTURE if private else {}),
    }
    config = ScorerConfig(n_items=len(vocab), **options)
    model = SequenceScorer(config).to(device)
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

    # A case whose prefix lost every item to a DP vocabulary cannot be scored: a miss.
    known = [i for i, prefix in enumerate(val_prefixes) if prefix]
    calibration = split.calibration_cases([picked[i] for i in known])
    unscorable = len(val_prefixes) - len(known)
    scored = ([val_prefixes[i] for i in known], val_targets[known])

    def validate(model: SequenceScorer) -> dict[str, float]:
        metrics = RankingMetrics()
        ranker = PrefixRanker(model)
        prefixes, targets = scored
        for i in range(0, len(prefixes), 1024):
            metrics.update(ranker.score_many(prefixes[i : i + 1024]), targets[i : i + 1024])
        if unscorable:
            metrics.update_ranks(torch.full((unscorable,), MISS_RANK))
        if private:
            return metrics.private_result(epsilon=validation_share(train_config))
        return metrics.result()

    def checkpoint(report: EpochReport, opt: torch.optim.Optimizer) -> None:
        report = private_spend(report, vocab_spend, train_config)
        history = meta.setdefault("history", [])
        history.append(
            {
                "epoch": report.epoch,
                "loss": None if private else report.loss,  # computed without noise
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
            vocab=vocab,
            meta={**meta, "metrics": report.metrics, "privacy": report.privacy},
            best=report.best,
        )
        log.info("checkpoint %s", path)

    if private:
        reports = train_private(
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
        choose_private_ranker(run_dir, sequences, scored, train_config)
        final = calibrate_run(run_dir, calibration, train_config, train_part=sequences)
        reports = [private_spend(report, vocab_spend, train_config) for report in reports]
        if reports and final is not None:  # the newest epoch is the chosen one
            reports[-1] = dataclasses.replace(reports[-1], privacy=final)
        return reports
    reports = train(
        model,
        sequences,
        train_config,
        optimizer=optimizer,
        start_epoch=start_epoch,
        validate=validate,
        on_epoch=checkpoint,
        progress=progress,
        curve=_resumed_curve(run_dir, train_config),
    )
    choose_ranker(run_dir, split, protocol.train)
    calibrate_run(run_dir, calibration, train_config, train_part=split.train)
    return reports


def choose_ranker(
    run_dir: Path, split: ValidationSplit, sessions: Sequence[list[int]]
) -> RankerParts | None:
    """Choose the served ranker's mix for the run's chosen epoch and store it there.

    The mix is chosen with kNN over the training part only (the validation sessions
    are what it is judged on); the stored index then holds every training session.
    A non-private run only: the index holds sessions, and the choice looks at them.
    """
    chosen = best_checkpoint(run_dir)
    if chosen is None:
        return None
    checkpoint = load_checkpoint(chosen)
    n_items = len(checkpoint.vocab)
    knn = SessionKNN(split.train, n_items=n_items, weighting="linear")
    weights, result, _ = choose_weights(checkpoint.model, knn, split.prefixes, split.targets)
    index = item_matrix(sessions, n_items=n_items) if weights.neighbours > 0 else None
    parts = RankerParts(weights=weights, sessions=index, validation=result)
    log.info("served ranker of %s: %s, validation %s", chosen, weights, result)
    save_ranker(chosen, parts)
    return parts


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
    privacy = meta.get("privacy")
    if (privacy is not None) != private:
        # Mixing private and non-private epochs would leave no valid guarantee.
        kind = "a differentially private" if privacy is not None else "a non-private"
        raise ValueError(f"{run_dir} holds {kind} run; resume it as such or use a new --out")
    if meta["config"] != config.to_dict():
        raise ValueError(f"{run_dir} holds a run with another model config; use a new --out")
    if privacy is not None and "sgd_delta" in privacy:
        privacy = {**privacy, "delta": privacy["sgd_delta"]}  # the plan DP-SGD resumes with
    model.load_state_dict(torch.load(latest / "weights.pt", weights_only=True))
    optimizer.load_state_dict(torch.load(latest / "optimizer.pt", weights_only=True))
    log.info("resuming %s after epoch %d", run_dir, meta["epoch"])
    return int(meta["epoch"]), privacy


def _private_vocabulary(
    run_dir: Path, full: ItemVocab, split: ValidationSplit, config: TrainConfig
) -> tuple[ItemVocab, dict[str, Any] | None]:
    """The DP vocabulary of a private run: drawn once, then the resumed checkpoint's.

    Drawing it again on resume would spend its epsilon again and change the rows.
    """
    latest = latest_checkpoint(run_dir)
    if latest is not None:
        checkpoint_privacy = json.loads((latest / "meta.json").read_text()).get("privacy") or {}
        ids = json.loads((latest / "vocab.json").read_text())
        return ItemVocab.build([ids]), checkpoint_privacy.get("vocabulary")
    assert config.dp_epsilon is not None
    sessions = [[full.ids[i] for i in session] for session in split.train]
    vocab, spend = private_vocabulary(
        sessions,
        epsilon=config.dp_vocab_epsilon,
        delta=config.dp_delta,
        max_items=config.dp_vocab_items,
    )
    log.info("DP vocabulary: %d of %d items (%s)", len(vocab) - 1, len(full) - 1, spend)
    if len(vocab) < 2:
        raise TrainingDataError(
            f"the DP vocabulary release kept no item at epsilon {config.dp_vocab_epsilon:g}: no "
            "item is in enough sessions for its threshold; raise --dp-vocab-epsilon or train on "
            "more data"
        )
    return vocab, spend


def private_spend(
    report: EpochReport, vocabulary: dict[str, Any] | None, config: TrainConfig
) -> EpochReport:
    """A DP epoch's report with its vocabulary and its validation metrics' releases composed in.

    The memory and the mix choice come later (:func:`choose_private_ranker`); a
    non-private report is returned as is.
    """
    if report.privacy is None:
        return report
    privacy = composed_privacy(
        report.privacy,
        vocabulary=vocabulary,
        memory=None,
        validation_releases=report.epoch,
        config=config,
    )
    return dataclasses.replace(report, privacy=privacy)


def _resumed_curve(run_dir: Path, config: TrainConfig) -> ValidationCurve:
    """The validation curve of the run so far: its chosen epoch and that epoch's metrics."""
    curve = ValidationCurve(config.patience)
    chosen = best_checkpoint(run_dir)
    if chosen is not None:
        meta = json.loads((chosen / "meta.json").read_text())
        curve.record(int(meta["epoch"]), meta.get("metrics") or {})
    return curve
