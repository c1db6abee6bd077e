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
    - Per-sample gradients of the item table are dense (B, N, D) tensors. They come
      from :func:`_embedding_grad_sample`, registered for ``nn.Embedding`` in place of
      Opacus' own (process-wide), which also credits ``padding_idx``. A Poisson batch
      is processed in length-sorted physical chunks (:data:`GRAD_SAMPLE_BYTES`,
      :data:`PADDING_WASTE`), clipped and summed chunk by chunk (the pattern of
      Opacus' ``BatchMemoryManager``), with one noisy step per Poisson batch.
    - Cost: on one H200, full Diginetica catalogue, d = 128, a DP step took 100 ms
      for 256 sessions and 167 ms for 1,024 (the plain float32 step: 13 and 17 ms).
    - The intent head is not trained (neither does the plain loop).
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
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Protocol, cast

import torch
import torch.nn.functional as F
from opacus import PrivacyEngine
from opacus.accountants.utils import get_noise_multiplier
from opacus.grad_sample.utils import register_grad_sampler
from opacus.optimizers import DPOptimizer
from rich.progress import Progress
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from model.batches import HistoryBatch, pad_histories
from model.scorer import SequenceScorer
from model.training.attention import AttentionSwap
from model.training.train import Accountant, EpochReport, OnEpoch, TrainConfig, Validate

log = logging.getLogger(__name__)

#: The privacy unit recorded in checkpoints (see the module docstring).
UNIT = "session"
#: Warnings of Opacus' normal operation, silenced where they arise: embedding inputs are
#: integer indices, so its backward hook only sees output gradients (all it needs), and
#: RDP's "optimal order is the largest/smallest alpha" is about the tightness of a
#: still valid upper bound.
BENIGN_WARNINGS = (
    "Full backward hook is firing when gradients are computed with respect to module outputs",
    "Optimal order is the (largest|smallest) alpha",
)
#: Bytes of per-sample gradients one physical chunk may hold, by device type (the
#: item table's per-sample gradients are dense: 43k x 128 floats = 22 MB per session).
GRAD_SAMPLE_BYTES = {"cpu": 1 << 30, "cuda": 8 << 30}
#: A physical chunk's padded positions stay under this factor times its events.
PADDING_WASTE = 1.5


def session_losses(
    model: SequenceScorer, batch: HistoryBatch, negatives: torch.Tensor
) -> torch.Tensor:
    """Mean next-item cross-entropy of each session against shared negatives.

    Every position scores its own next item against ``negatives`` (a negative equal
    to that item is masked). Row b depends on session b only (plus data-independent
    negatives), so per-sample gradients of the summed loss are per session.

    Args:
        model: the scorer.
        batch: (B, T) histories of at least two events each.
        negatives: (K,) int64 item indices >= 1, drawn independently of the data.

    Returns:
        (B,) float32 losses.

    Examples:
        >>> from model.config import ScorerConfig
        >>> scorer = SequenceScorer(ScorerConfig(n_items=10, d_model=8, n_heads=2))
        >>> batch = pad_histories([[1, 2, 3], [4, 5]], max_len=8)
        >>> session_losses(scorer, batch, torch.tensor([6, 7, 8])).shape
        torch.Size([2])
    """
    queries = F.normalize(model.hidden(batch)[:, :-1], dim=-1)
    targets = batch.items[:, 1:]
    b, t = targets.shape
    # One (B, T - 1 + K) lookup of the tied item table: Opacus sees the output side
    # of the table through the module, with a batch dimension.
    lookup = model.embed.items(torch.cat([targets, negatives.expand(b, -1)], dim=1))
    # Cosines as dot products over norms, as F.normalize(eps=1e-12) would give: the
    # (B, K, D) negatives are the bulk of the work, so they pass through few ops.
    inverse_norms = model.config.logit_scale / lookup.norm(dim=-1).clamp(min=1e-12)
    positive = (queries * lookup[:, :t]).sum(-1) * inverse_norms[:, :t]  # (B, T - 1)
    negative = (queries @ lookup[:, t:].transpose(1, 2)) * inverse_norms[:, None, t:]
    negative = negative.masked_fill(negatives == targets[..., None], float("-inf"))
    nll = torch.logsumexp(torch.cat([positive[..., None], negative], dim=-1), dim=-1) - positive
    real = targets != 0
    return torch.where(real, nll, 0.0).sum(1) / real.sum(1).clamp(min=1)


def trained_parameters(model: SequenceScorer) -> list[nn.Parameter]:
    """Parameters the next-item loss reaches (all but the intent head).

    Opacus needs a per-sample gradient for every parameter its optimizer updates.
    """
    head = {id(p) for p in model.intent_head.parameters()}
    return [p for p in model.parameters() if id(p) not in head]


@contextmanager
def _benign_warnings_ignored() -> Iterator[None]:
    with warnings.catch_warnings():
        for message in BENIGN_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=UserWarning)
        yield


def _embedding_grad_sample(
    layer: nn.Embedding, activations: list[torch.Tensor], backprops: torch.Tensor
) -> dict[nn.Parameter, torch.Tensor]:
    """Per-sample gradients of an ``nn.Embedding``: (B, N, D), autograd's ``padding_idx`` rule.

    Replaces Opacus 1.6's sampler, which sends the gradient of padding lookups to row
    ``padding_idx`` (autograd never updates it; it would use up clipping norm, and the
    type and gap tables of item-only data are all padding), and which expands the
    indices to a (B, L, D) int64 tensor for ``scatter_add_``; ``index_add_`` on rows
    offset by sample needs (B * L,).
    """
    indices = activations[0].reshape(len(activations[0]), -1)
    b, (n, d) = indices.shape[0], layer.weight.shape
    offsets = torch.arange(b, device=indices.device)[:, None] * n
    grad_sample = torch.zeros(b * n, d, device=backprops.device, dtype=backprops.dtype)
    grad_sample.index_add_(0, (indices + offsets).flatten(), backprops.reshape(-1, d))
    grad_sample = grad_sample.view(b, n, d)
    if layer.padding_idx is not None:
        grad_sample[:, layer.padding_idx] = 0
    return {cast(nn.Parameter, layer.weight): grad_sample}


class Negatives(Protocol):
    """The setting a DP step reads: ``TrainConfig`` or ``model.training.update.OnlinePrivacy``."""

    @property
    def negatives(self) -> int: ...


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
        with _benign_warnings_ignored():
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


def attach_opacus(
    model: SequenceScorer,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader[Any],
    *,
    noise_multiplier: float,
    max_grad_norm: float,
    accountant: Accountant,
    generator: torch.Generator,
) -> tuple[PrivacyEngine, Any, DPOptimizer, DataLoader[Any]]:
    """Opacus' engine (accountant), hooks, ``DPOptimizer`` and loader for ``model``.

    Shared by offline (:func:`make_private`) and online (``model.training.update``) DP-SGD;
    ``model``'s attention must be swapped (:class:`AttentionSwap`). The optimizer
    divides the noisy sum by ``loader``'s batch size and the accountant records each
    step at sample rate 1 / ``len(loader)`` (``loader`` is wrapped for Poisson sampling);
    ``generator`` seeds the noise, and hooks stay on ``model`` until ``hooks.cleanup()``.
    """
    register_grad_sampler(nn.Embedding)(_embedding_grad_sample)
    device = next(model.parameters()).device
    seed = int(torch.randint(2**62, (1,), generator=generator))
    with warnings.catch_warnings():
        # secure_mode needs torchcsprng; see "Randomness" in the module docstring.
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        engine = PrivacyEngine(accountant=accountant)
    hooks, dp_optimizer, dp_loader = engine.make_private(
        module=model,
        optimizer=optimizer,
        data_loader=loader,
        noise_multiplier=noise_multiplier,
        max_grad_norm=max_grad_norm,
        poisson_sampling=True,
        noise_generator=torch.Generator(device).manual_seed(seed),
        grad_sample_mode="hooks",
        wrap_model=False,
    )
    return engine, hooks, dp_optimizer, dp_loader


def _noise_multiplier(config: TrainConfig, epsilon: float, sample_rate: float, steps: int) -> float:
    """sigma that spends exactly ``epsilon`` (at ``config.dp_delta``) in ``steps`` steps."""
    with _benign_warnings_ignored():
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
        ValueError: no ``dp_epsilon``, or ``resumed`` was made with other settings.
    """
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
            total += _private_step(model, run.optimizer, rows, config, rng)
            seen += len(rows)
            bar.advance(task)
    return float(total) / max(seen, 1)


def _private_step(
    model: SequenceScorer,
    optimizer: DPOptimizer,
    rows: list[Sequence[int]],
    config: Negatives,
    rng: torch.Generator,
) -> torch.Tensor:
    """One DP-SGD step on one sample of sessions (at most one row each); the sum of their losses."""
    total = torch.zeros(())
    device = next(model.parameters()).device
    n_items = model.config.n_items
    negatives = (
        torch.randint(1, n_items, (config.negatives,), generator=rng)
        if config.negatives
        else torch.arange(1, n_items)  # full softmax
    ).to(device)
    chunks = _chunks(rows, _physical_rows(optimizer, device), model.config.max_len)
    if not chunks:
        # An empty Poisson sample: a noise-only step, counted like any other.
        for p in optimizer.params:
            p.grad_sample = torch.zeros((0, *p.shape), device=p.device, dtype=p.dtype)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    for i, chunk in enumerate(chunks):
        batch = pad_histories(chunk, max_len=model.config.max_len).to(device)
        losses = session_losses(model, batch, negatives)
        with _benign_warnings_ignored():
            losses.mean().backward()  # type: ignore[no-untyped-call]
        # Clip and sum this chunk's per-session gradients; the last chunk adds noise.
        optimizer.signal_skip_step(do_skip=i < len(chunks) - 1)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        total += losses.detach().sum().cpu()
    with torch.no_grad():
        for table in (model.embed.items, model.embed.types, model.embed.gaps):
            table.weight[0].zero_()
    return total


def _physical_rows(optimizer: DPOptimizer, device: torch.device) -> int:
    """Sessions per chunk whose dense per-sample gradients fit ``GRAD_SAMPLE_BYTES``."""
    per_session = sum(int(p.numel() * p.element_size()) for p in optimizer.params)
    return max(1, GRAD_SAMPLE_BYTES.get(device.type, 1 << 30) // per_session)


def _chunks(rows: list[Sequence[int]], size: int, max_len: int) -> list[list[Sequence[int]]]:
    """Rows sorted by length, in chunks of at most ``size`` and little padding.

    A Poisson sample mixes all lengths, and the DP loss and Opacus' per-sample
    gradients cost per padded position, so a chunk closes before its padded area
    would exceed ``PADDING_WASTE`` times its events.
    """
    chunks: list[list[Sequence[int]]] = [[]]
    events = 0
    for row in sorted(rows, key=len):
        width = min(len(row), max_len)  # the widest of its chunk so far
        chunk = chunks[-1]
        if chunk and (
            len(chunk) == size or (len(chunk) + 1) * width > PADDING_WASTE * (events + width)
        ):
            chunk = []
            chunks.append(chunk)
            events = 0
        chunk.append(row)
        events += width
    return [chunk for chunk in chunks if chunk]


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
