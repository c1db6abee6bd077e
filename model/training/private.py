"""Differentially private training of the sequence scorer: DP-SGD with Opacus.

``intentstream train DATA --out RUN --dp-epsilon 4 --dp-delta 1e-6`` runs
:func:`train_private` (through :func:`model.training.fit.fit`) instead of the plain loop.
Online updates (:class:`model.training.update.OnlineDPSGD`) reuse :func:`attach_opacus`
and its step.

What is protected (the privacy unit)
    One training sequence, i.e. one **session**, is one sample: the released weights
    are (epsilon, delta)-DP with respect to adding or removing one session from the
    training set. This is session-level, not user-level, DP: a user with k sessions
    is protected only at about k * epsilon (group privacy). User-level DP needs one
    sample per user (all of a user's sessions grouped, clipped together) and a user
    key in the training data. Diginetica's sessions are anonymous, so a session is
    the finest unit there is.

How (DP-SGD, Abadi et al. 2016, all privacy-relevant parts done by Opacus)
    - Poisson sampling (Opacus' ``DPDataLoader``): each step takes every session
      independently with probability q = 1 / ceil(N / batch_size), as the accountant
      assumes. An empty sample still takes a noise-only step.
    - Each session's gradient is clipped to ``dp_max_grad_norm`` (flat, over all
      trained parameters), the clipped gradients are summed, Gaussian noise of
      standard deviation sigma * C is added, and the sum is divided by the expected
      batch size; Adam then only post-processes the noisy gradient.
    - sigma is calibrated before training so the planned ``epochs`` reach exactly the
      target (epsilon, delta) (``get_noise_multiplier``); the accountant (PRV by
      default, or RDP) records each step, and every checkpoint records the epsilon
      spent so far. Stopping early (``max_minutes``) spends less.

Why the loss differs from :func:`model.training.train.next_item_loss`
    The plain loss scores each position against the *batch's* next items, so
    removing one session changes the loss of the others and clipping per session
    would no longer bound the sensitivity. Here (:func:`session_losses`) each
    position scores its own next item against K item indices drawn uniformly, which
    depend on no data and are shared by the batch: the batch loss is a sum of
    per-session terms, so per-sample gradients are per session.

The transformer under Opacus
    Opacus' hooks cannot see inside ``nn.MultiheadAttention`` (``model/training/attention.py``
    says why), so during DP steps each block's attention is swapped for
    :class:`model.training.attention.PerSampleAttention`, which holds the *same* ``Parameter``
    objects in two ``nn.Linear`` layers and attends with
    ``scaled_dot_product_attention``. Validation and checkpoints run on the
    original modules, so a private checkpoint is an ordinary ``SequenceScorer`` state
    dict that :func:`model.checkpoint.load_checkpoint` loads as is.

Other details
    - float32 only: bfloat16 autocast is off during DP steps.
    - Per-sample gradients of the item table are dense (B, N, D) tensors, from
      :mod:`model.training.dp_sgd`'s own sampler for ``nn.Embedding`` (Opacus' own
      also credits ``padding_idx``). A Poisson batch is processed in length-sorted
      physical chunks (``GRAD_SAMPLE_BYTES``, ``PADDING_WASTE`` there), clipped and
      summed chunk by chunk (the pattern of Opacus' ``BatchMemoryManager``), with one
      noisy step per Poisson batch.
    - Cost: on one H200, full Diginetica catalogue, d = 128, a DP step took 100 ms
      for 256 sessions and 167 ms for 1,024 (the plain float32 step: 13 and 17 ms).
    - The padding rows (index 0) of the item, type and gap tables are zeroed after
      each step: noise lands on every coordinate, and zeroing is post-processing.
    - Randomness: sampling and noise come from a generator seeded from the OS's
      entropy unless a test injects one; ``config.seed`` does not seed them, since a
      known seed would let anyone replay the noise. Opacus' ``secure_mode`` (needs
      ``torchcsprng``, not a dependency) is off: torch's PRNG is not cryptographic.
    - Not covered by the guarantee: the per-epoch training loss and the validation
      metrics written beside the weights (computed on sessions without noise).
    - Resuming: the accountant's history is saved in the checkpoint meta and restored;
      a resumed run must use the same DP settings and data (else ValueError).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from opacus import PrivacyEngine
from opacus.accountants.utils import get_noise_multiplier
from opacus.optimizers import DPOptimizer
from rich.progress import Progress
from torch.utils.data import DataLoader, TensorDataset

from model.scorer import SequenceScorer
from model.training.attention import AttentionSwap
from model.training.dp_sgd import (
    UNIT,
    attach_opacus,
    benign_warnings_ignored,
    private_step,
)
from model.training.train import EpochReport, OnEpoch, TrainConfig, Validate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PrivateRun:
    """Opacus' parts of one DP run: accountant, hooks, optimizer, Poisson loader."""

    engine: PrivacyEngine
    hooks: Any
    optimizer: DPOptimizer
    loader: DataLoader[Any]
    sample_rate: float
    planned_steps: int

    def plan(self, config: TrainConfig) -> dict[str, Any]:
        """The settings the noise was calibrated for; a resumed run must match them."""
        return {
            "target_epsilon": config.dp_epsilon,
            "delta": config.dp_delta,
            "max_grad_norm": config.dp_max_grad_norm,
            "noise_multiplier": float(self.optimizer.noise_multiplier),
            "sample_rate": self.sample_rate,
            "planned_steps": self.planned_steps,
            "accountant": str(self.engine.accountant.mechanism()),
        }

    def spent_epsilon(self, config: TrainConfig) -> float:
        """Epsilon spent so far at ``config.dp_delta`` (0 before the first step)."""
        if len(self.engine.accountant) == 0:
            return 0.0
        with benign_warnings_ignored():
            return float(self.engine.get_epsilon(config.dp_delta))

    def spent(self, config: TrainConfig) -> dict[str, Any]:
        """What the run has spent so far: the checkpoint meta's ``privacy``."""
        accountant = self.engine.accountant
        return {
            "epsilon": self.spent_epsilon(config),
            **self.plan(config),
            "expected_batch_size": int(self.optimizer.expected_batch_size),
            "steps": sum(int(steps) for _, _, steps in accountant.history),
            "accountant_history": [list(entry) for entry in accountant.history],
            "unit": UNIT,
            "secure_rng": False,
        }


def make_private(
    model: SequenceScorer,
    optimizer: torch.optim.Optimizer,
    n_sessions: int,
    config: TrainConfig,
    *,
    generator: torch.Generator,
) -> PrivateRun:
    """Attach Opacus to ``model``, whose attention must be swapped (:class:`AttentionSwap`).

    Args:
        model: the scorer; Opacus' hooks are added to it (``run.hooks.cleanup()``).
        optimizer: over :func:`trained_parameters`; wrapped into a ``DPOptimizer``.
        n_sessions: training sessions N; the loader yields (indices,) batches of them.
        config: ``dp_epsilon`` must be set.
        generator: CPU generator for the Poisson sampling and the noise's seed.
    """
    if config.dp_epsilon is None:
        raise ValueError("config.dp_epsilon is not set")
    loader = DataLoader(
        TensorDataset(torch.arange(n_sessions)), batch_size=config.batch_size, generator=generator
    )
    sample_rate = 1 / len(loader)
    # The steps Opacus' UniformWithReplacementSampler takes per epoch.
    planned_steps = config.epochs * int(1 / sample_rate)
    sigma = _noise_multiplier(config, config.dp_epsilon, sample_rate, planned_steps)
    engine, hooks, dp_optimizer, dp_loader = attach_opacus(
        model,
        optimizer,
        loader,
        noise_multiplier=sigma,
        max_grad_norm=config.dp_max_grad_norm,
        accountant=config.dp_accountant,
        generator=generator,
    )
    return PrivateRun(engine, hooks, dp_optimizer, dp_loader, sample_rate, planned_steps)


def _noise_multiplier(config: TrainConfig, epsilon: float, sample_rate: float, steps: int) -> float:
    """sigma that spends exactly ``epsilon`` (at ``config.dp_delta``) in ``steps`` steps."""
    with benign_warnings_ignored():
        sigma = float(
            get_noise_multiplier(
                target_epsilon=epsilon,
                target_delta=config.dp_delta,
                sample_rate=sample_rate,
                steps=steps,
                accountant=config.dp_accountant,
            )
        )
    log.info("DP-SGD: noise multiplier %.4f, sample rate %.3g, %d steps", sigma, sample_rate, steps)
    return sigma


def train_private(
    model: SequenceScorer,
    sequences: Sequence[Sequence[int]],
    config: TrainConfig,
    *,
    optimizer: torch.optim.Optimizer,
    start_epoch: int = 0,
    resumed: dict[str, Any] | None = None,
    validate: Validate | None = None,
    on_epoch: OnEpoch | None = None,
    progress: bool = True,
    generator: torch.Generator | None = None,
) -> list[EpochReport]:
    """DP-SGD for ``config.epochs`` (from ``start_epoch``) or until ``max_minutes``.

    Same contract as :func:`model.training.train.train`; each report's ``privacy`` is what
    was spent so far (:meth:`PrivateRun.spent`).

    Args:
        model: the scorer; trained in place, left with its original modules.
        sequences: item-index sequences (sessions) of at least two items.
        config: ``dp_epsilon`` must be set.
        optimizer: over :func:`trained_parameters` (restored on resume).
        start_epoch: epochs already done (resuming).
        resumed: the ``privacy`` meta of the checkpoint resumed from.
        validate: metrics of the model after each epoch.
        on_epoch: called after each epoch, e.g. to write a checkpoint.
        progress: show a progress bar.
        generator: for tests only: seeds sampling and noise (default: OS entropy).

    Raises:
        ValueError: no ``dp_epsilon``, ``resumed`` was made with other settings, or the
            model has a repeat head (the per-session loss does not train one).
    """
    if model.repeat_head is not None:
        raise ValueError("DP-SGD trains no repeat head: build the scorer with repeat=False")
    log.info("training config (DP-SGD): %s", asdict(config))
    if config.dp_delta * len(sequences) >= 1:
        log.warning("dp_delta %g >= 1 / %d sessions: weak", config.dp_delta, len(sequences))
    rng = generator or torch.Generator().manual_seed(secrets.randbits(63))
    swap = AttentionSwap(model)
    with swap.per_sample():
        run = make_private(model, optimizer, len(sequences), config, generator=rng)
    deadline = time.monotonic() + 60 * config.max_minutes if config.max_minutes else None
    reports = []
    try:
        if resumed is not None:
            _restore_accountant(run, resumed, config)
        for epoch in range(start_epoch + 1, config.epochs + 1):
            started = time.monotonic()
            with swap.per_sample():
                loss = _private_epoch(model, sequences, run, config, rng, progress=progress)
            metrics = validate(model) if validate else {}
            seconds = time.monotonic() - started
            privacy = run.spent(config)
            report = EpochReport(epoch, loss, seconds, metrics, privacy=privacy)
            log.info("DP epoch %d: loss %.4f in %.0f s, %s", epoch, loss, seconds, metrics)
            log.info("epsilon spent %.3f of %s", privacy["epsilon"], config.dp_epsilon)
            reports.append(report)
            if on_epoch:
                on_epoch(report, run.optimizer)
            if deadline is not None and time.monotonic() > deadline:
                log.info("stopping after epoch %d: %s min spent", epoch, config.max_minutes)
                break
    finally:
        run.hooks.cleanup()
    return reports


def _private_epoch(
    model: SequenceScorer,
    sequences: Sequence[Sequence[int]],
    run: PrivateRun,
    config: TrainConfig,
    rng: torch.Generator,
    *,
    progress: bool,
) -> float:
    """One epoch of Poisson-sampled DP-SGD steps; the mean loss per session."""
    model.train()
    total, seen = torch.zeros(()), 0
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("DP-SGD epoch", total=len(run.loader))
        for (indices,) in run.loader:
            rows = [sequences[i] for i in indices.tolist()]
            total += private_step(model, run.optimizer, rows, config.dp_negatives, rng)
            seen += len(rows)
            bar.advance(task)
    return float(total) / max(seen, 1)


def _restore_accountant(run: PrivateRun, resumed: dict[str, Any], config: TrainConfig) -> None:
    """Continue the accountant of the run resumed from, if it had the same plan."""
    plan = run.plan(config)
    changed = [key for key, value in plan.items() if resumed.get(key) != value]
    if changed:
        raise ValueError(
            f"cannot resume this DP run with a different {', '.join(changed)} (its noise was "
            "calibrated for the original plan): use the same settings and data, or a new --out"
        )
    history = [tuple(entry) for entry in resumed["accountant_history"]]
    run.engine.accountant.load_state_dict({"history": history, "mechanism": plan["accountant"]})
    log.info("resumed DP accounting after %d steps", sum(int(e[2]) for e in history))
