"""Training loop of the sequence scorer: sessions in, checkpoints out.

Every position of a session predicts the next item (causal attention, so one
pass trains all prefixes of a session at once). The next-item loss is a sampled
softmax: the batch's true next items plus ``negatives`` items drawn uniformly,
scored in bfloat16 where the CPU supports it; on a 2-core CPU 16,384 of them cost
a third less per batch than the full softmax over 43k items (docs/quality.md).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from rich.progress import Progress

from model.batches import HistoryBatch, pad_histories
from model.evaluation.metrics import selection_score
from model.scorer import SequenceScorer

log = logging.getLogger(__name__)


Accountant = Literal["prv", "rdp"]


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (hyperparameters of the model are in ScorerConfig).

    Attributes:
        negatives: uniform items sampled per batch for the softmax, beside the batch's
            true next items (0 = the full softmax over the catalogue).
        dp_negatives: the same for DP-SGD, whose per-session loss looks each one up
            for every session of a step (so it costs far more per negative).
        dp_epsilon: train with DP-SGD (``model/training/private.py``) to this target epsilon
            over ``epochs``; None trains without differential privacy.
        dp_delta: the delta of the guarantee; keep it below 1 / (training sessions).
        dp_max_grad_norm: per-session gradient clipping norm C.
        dp_accountant: Opacus accountant that calibrates the noise and tracks the
            spend: "prv" (tighter) or "rdp".
        dp_vocab_epsilon: with ``dp_epsilon``, the epsilon of the DP release of the
            vocabulary (``model/training/vocabulary.py``); it adds to the reported spend,
            and so does ``dp_delta`` a second time.
        dp_vocab_items: distinct items one session adds to that release.
        dp_memory_epsilon: with ``dp_epsilon``, the epsilon of the DP release of which
            items sessions hold near which, the served ranker's memory part
            (``model/training/transitions.py``); it adds to the training part's spend,
            and so does ``dp_delta`` once more.
        dp_validation_epsilon: with ``dp_epsilon``, what the held-out validation
            sessions spend: each epoch's released metrics, the served ranker's mix
            choice and the click calibration share it equally
            (``model/training/private_ranker.py``).
        lr_half_life: batches over which the learning rate halves (non-private runs; 0 =
            constant). It is set per epoch: ``learning_rate * 0.5 ** (batches before the
            epoch / lr_half_life)``. A rate high enough to learn fast at first
            overshoots later; counted in batches, not epochs, so a small data set (a
            few dozen batches an epoch) keeps its rate for many epochs.

    With ``dp_epsilon`` set, ``batch_size`` is the expected size of the Poisson-sampled
    batches and ``bf16`` is ignored (DP steps run in float32).
    """

    epochs: int = 30
    patience: int = 2
    batch_size: int = 256
    learning_rate: float = 3e-3
    lr_half_life: int = 650
    negatives: int = 16_384
    dp_negatives: int = 4096
    bf16: bool = True
    seed: int = 0
    max_minutes: float | None = None
    dp_epsilon: float | None = None
    dp_delta: float = 1e-5
    dp_max_grad_norm: float = 1.0
    dp_accountant: Accountant = "prv"
    dp_vocab_epsilon: float = 1.0
    dp_vocab_items: int = 5
    dp_memory_epsilon: float = 1.0
    dp_validation_epsilon: float = 1.0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or min(self.negatives, self.dp_negatives) < 0:
            raise ValueError("epochs and batch_size must be >= 1, negatives >= 0")
        if self.learning_rate <= 0 or self.lr_half_life < 0:
            raise ValueError("learning_rate must be > 0 and lr_half_life >= 0")
        # `not x > 0` also rejects NaN.
        if self.dp_epsilon is not None and not (0 < self.dp_epsilon < math.inf):
            raise ValueError(f"dp_epsilon must be finite and > 0, got {self.dp_epsilon}")
        if not 0 < self.dp_delta < 1:
            raise ValueError(f"dp_delta must be in (0, 1), got {self.dp_delta}")
        if not 0 < self.dp_max_grad_norm < math.inf:
            raise ValueError(
                f"dp_max_grad_norm must be finite and > 0, got {self.dp_max_grad_norm}"
            )
        if self.patience < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience}")
        if not 0 < self.dp_vocab_epsilon < math.inf or self.dp_vocab_items < 1:
            raise ValueError("dp_vocab_epsilon must be finite and > 0, dp_vocab_items >= 1")
        for name in ("dp_memory_epsilon", "dp_validation_epsilon"):
            if not 0 < getattr(self, name) < math.inf:
                raise ValueError(f"{name} must be finite and > 0, got {getattr(self, name)}")
        if self.dp_accountant not in get_args(Accountant):
            raise ValueError(f"dp_accountant must be one of {get_args(Accountant)}")


@dataclass(frozen=True)
class EpochReport:
    """What one epoch did: mean loss, seconds, validation metrics, privacy spent so far.

    ``privacy`` is None for non-private training, else what
    :func:`model.training.private.train_private` spent (epsilon, delta, clipping norm, ...).
    ``best``: this epoch is the best on validation so far (:class:`ValidationCurve`).
    """

    epoch: int
    loss: float
    seconds: float
    metrics: dict[str, float]
    privacy: dict[str, Any] | None = None
    best: bool = True


@dataclass
class ValidationCurve:
    """Which epoch is best on validation (``selection_score``), and when to stop (patience).

    A run's last epoch is not its best once the model overfits, and a fixed epoch
    count stops too early or too late: training stops after ``patience`` epochs
    without a better one, and the run serves its best epoch.

    Examples:
        >>> curve = ValidationCurve(patience=2)
        >>> [curve.record(e, {"P@20": p, "MRR@20": 1.0}) for e, p in enumerate([3, 5, 4, 4], 1)]
        [True, True, False, False]
        >>> curve.best_epoch, curve.exhausted(4)
        (2, True)
    """

    patience: int
    best_epoch: int = 0
    best: float = -math.inf

    def record(self, epoch: int, metrics: dict[str, float]) -> bool:
        """Note epoch ``epoch``'s validation ``metrics``; True when it is the best so far."""
        score = selection_score(metrics)
        if score > self.best or not metrics:
            self.best, self.best_epoch = score, epoch
            return True
        return False

    def exhausted(self, epoch: int) -> bool:
        """Whether ``patience`` epochs up to ``epoch`` brought nothing better."""
        return epoch - self.best_epoch >= self.patience


Validate = Callable[[SequenceScorer], dict[str, float]]
OnEpoch = Callable[[EpochReport, torch.optim.Optimizer], None]


def length_batches(
    sequences: Sequence[Sequence[int]], batch_size: int, generator: torch.Generator
) -> list[list[int]]:
    """Batches of similar-length sequences (little padding), in a seeded random order."""
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    shuffled = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in shuffled]


def next_item_loss(
    model: SequenceScorer, batch: HistoryBatch, *, negatives: int, generator: torch.Generator
) -> torch.Tensor:
    """Cross-entropy of each position's next item, full or sampled softmax.

    With a repeat head, the probability of the next item is the gated mixture of an
    explore softmax over the items the history does not hold and the pointer's mass
    on the history's copies of that item (RepeatNet's two modes).
    """
    h = model(batch)
    targets = batch.items[:, 1:]
    mask = targets != 0
    hidden, positives = model.queries(h, batch)[:, :-1][mask], targets[mask]
    rows = torch.arange(len(positives), device=h.device)
    if negatives == 0:
        candidates, columns = torch.arange(model.config.n_items, device=h.device), positives
        excluded = candidates[None, :].expand(len(rows), -1) == 0  # padding
    else:
        sampled = torch.randint(1, model.config.n_items, (negatives,), generator=generator)
        candidates, columns = torch.cat([positives, sampled.to(h.device)]), rows
        # Another row's positive (or a sample) equal to this row's target is not a negative.
        excluded = positives[:, None] == candidates[None, :]
        excluded[rows, rows] = False
    t = targets.shape[1]
    seen = torch.ones(t, t + 1, dtype=torch.bool, device=h.device).tril()
    allowed = seen[None] & (batch.items != 0)[:, None, :]  # position t saw events <= t
    if model.repeat_head is not None:
        # The history's items are the pointer's (the target's explore term is -inf then).
        excluded = excluded | held(
            torch.where(allowed, batch.items[:, None, :], 0)[mask], candidates
        )
    items = F.normalize(model.embed.items.weight[candidates], dim=-1)
    logits = model.config.logit_scale * (F.normalize(hidden, dim=-1) @ items.T)
    # A finite fill, then -inf: a row whose every candidate is excluded (the history
    # holds them all, as in a small catalogue) would give NaN, and NaN gradients.
    explore = torch.log_softmax(logits.float().masked_fill(excluded, -1e9), dim=-1)
    explore = explore.masked_fill(excluded, float("-inf"))[rows, columns]
    if model.repeat_head is None:
        return -explore.mean()
    pointer, log_gate, log_keep = model.repeat_head(h[:, :-1], h, allowed)
    copies = (pointer * (batch.items[:, None, :] == targets[..., None])).sum(-1)[mask]
    log_p = torch.logaddexp(
        log_keep[mask] + explore, log_gate[mask] + torch.log(copies.clamp_min(1e-9))
    )
    return -log_p.mean()


def held(history: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """(P, C) bool: whether candidate c is among row p's ``history`` items (0 = none).

    Examples:
        >>> held(torch.tensor([[3, 1, 0], [2, 0, 0]]), torch.tensor([1, 2, 3, 3])).tolist()
        [[True, False, True, True], [False, True, False, False]]
    """
    distinct, inverse = torch.unique(candidates, return_inverse=True)
    column = torch.searchsorted(distinct, history).clamp_max(len(distinct) - 1)
    hit = (distinct[column] == history) & (history != 0)
    rows = torch.arange(len(history), device=history.device)[:, None].expand_as(history)
    out = torch.zeros(len(history), len(distinct), dtype=torch.bool, device=history.device)
    out[rows[hit], column[hit]] = True
    return out[:, inverse]


def epoch_learning_rate(config: TrainConfig, epoch: int, batches: int) -> float:
    """The learning rate of ``epoch`` (from 1) when an epoch is ``batches`` batches.

    Examples:
        >>> config = TrainConfig(learning_rate=4e-3, lr_half_life=100)
        >>> [epoch_learning_rate(config, e, 100) for e in (1, 2, 3)]
        [0.004, 0.002, 0.001]
        >>> epoch_learning_rate(TrainConfig(lr_half_life=0), 9, 100) == TrainConfig.learning_rate
        True
    """
    if config.lr_half_life == 0:
        return config.learning_rate
    return config.learning_rate * math.pow(0.5, (epoch - 1) * batches / config.lr_half_life)


def train(
    model: SequenceScorer,
    sequences: Sequence[Sequence[int]],
    config: TrainConfig,
    *,
    optimizer: torch.optim.Optimizer,
    start_epoch: int = 0,
    validate: Validate | None = None,
    on_epoch: OnEpoch | None = None,
    progress: bool = True,
    curve: ValidationCurve | None = None,
) -> list[EpochReport]:
    """Train for ``config.epochs`` (from ``start_epoch``), until ``max_minutes`` or patience.

    Args:
        model: the scorer; trained in place.
        sequences: item-index sequences of at least two items.
        config: optimisation settings; ``seed`` fixes shuffling and sampling.
        optimizer: built by the caller (restored from a checkpoint on resume).
        start_epoch: epochs already done (resuming).
        validate: metrics of the model after each epoch.
        on_epoch: called after each epoch, e.g. to write a checkpoint.
        progress: show a progress bar.
        curve: the run's validation curve so far (resuming); a new one by default.

    Raises:
        ValueError: ``config`` asks for differential privacy (see model/training/private.py).
    """
    if config.dp_epsilon is not None:
        raise ValueError(
            "config.dp_epsilon is set: train with model.training.private.train_private"
        )
    generator = torch.Generator().manual_seed(config.seed)
    log.info("training config: %s", asdict(config))
    deadline = time.monotonic() + 60 * config.max_minutes if config.max_minutes else None
    curve = curve if curve is not None else ValidationCurve(config.patience)
    reports = []
    device = next(model.parameters()).device
    with Progress(disable=not progress, transient=True) as bar:
        for epoch in range(start_epoch + 1, config.epochs + 1):
            # Reseed per epoch so a resumed run draws what an uninterrupted one would.
            generator.manual_seed(config.seed * 1_000_003 + epoch)
            torch.manual_seed(config.seed * 1_000_003 + epoch)
            batches = length_batches(sequences, config.batch_size, generator)
            task = bar.add_task(f"epoch {epoch}/{config.epochs}", total=len(batches))
            for group in optimizer.param_groups:
                group["lr"] = epoch_learning_rate(config, epoch, len(batches))
            model.train()
            started, total = time.monotonic(), torch.zeros(())
            for rows in batches:
                batch = pad_histories([sequences[i] for i in rows], max_len=model.config.max_len)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16):
                    loss = next_item_loss(
                        model, batch.to(device), negatives=config.negatives, generator=generator
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                total += loss.detach().cpu()
                bar.advance(task)
            bar.remove_task(task)
            metrics = validate(model) if validate else {}
            mean_loss = float(total) / len(batches)
            best = curve.record(epoch, metrics)
            report = EpochReport(epoch, mean_loss, time.monotonic() - started, metrics, best=best)
            log.info(
                "epoch %d: loss %.4f in %.0f s, %s", epoch, report.loss, report.seconds, metrics
            )
            reports.append(report)
            if on_epoch:
                on_epoch(report, optimizer)
            if curve.exhausted(epoch):
                log.info(
                    "stopping after epoch %d: no better validation for %d epochs (best: %d)",
                    epoch,
                    config.patience,
                    curve.best_epoch,
                )
                break
            if deadline is not None and time.monotonic() > deadline:
                log.info(
                    "stopping after epoch %d: time budget of %s min spent",
                    epoch,
                    config.max_minutes,
                )
                break
    return reports
