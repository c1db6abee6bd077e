"""One incremental step of the scorer: a gradient step on a micro-batch of sequences.

``online_learning`` decides when to call it and on what (new sessions mixed
with a replay buffer); this module only knows how to take the step, with the
same next-item loss as offline training (``model.training.train.next_item_loss``), or, with
:class:`OnlineDPSGD`, a differentially private one.

Online DP-SGD (:class:`OnlineDPSGD`, the machinery of :mod:`model.training.private`)
    The privacy unit is one **session** of the stream. Each step is handed the
    *pool*, one row per session present (the caller's duty), includes each row
    independently with probability ``sample_rate`` q (Poisson sampling, from a
    generator seeded from the OS's entropy), and adds Gaussian noise to the sum of the
    clipped gradients. Opacus' RDP accountant composes every step as a subsampled
    Gaussian mechanism at rate q, together with the lineage's earlier steps
    (``prior``), and a step that would take epsilon past the lifetime budget is
    refused. What this proves, and what it assumes, is in docs/privacy.md ("The
    learner's DP-SGD").
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from opacus.accountants import RDPAccountant
from opacus.optimizers import DPOptimizer
from torch.utils.data import DataLoader, TensorDataset

from model.batches import pad_histories
from model.scorer import SequenceScorer
from model.training.attention import AttentionSwap
from model.training.dp_sgd import UNIT, attach_opacus, benign_warnings_ignored, private_step
from model.training.train import next_item_loss


def incremental_step(
    model: SequenceScorer,
    optimizer: torch.optim.Optimizer,
    sequences: Sequence[Sequence[int]],
    *,
    negatives: int,
    generator: torch.Generator,
) -> float:
    """One optimizer step on ``sequences`` (item indices, each >= 2 long); returns the loss.

    A step whose loss or gradients are not finite is not taken: one bad batch must
    not turn the weights a learner publishes into NaN. The model is left in eval
    mode, ready to score.
    """
    _check_rows(sequences)
    device = next(model.parameters()).device
    batch = pad_histories(sequences, max_len=model.config.max_len).to(device)
    model.train()
    loss = next_item_loss(model, batch, negatives=negatives, generator=generator)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()  # type: ignore[no-untyped-call]
    gradients = [p.grad for p in model.parameters() if p.grad is not None]
    if torch.isfinite(loss) and all(torch.isfinite(g).all() for g in gradients):
        optimizer.step()
    model.eval()
    return float(loss.detach())


def _check_rows(sequences: Sequence[Sequence[int]]) -> None:
    if not sequences or any(len(sequence) < 2 for sequence in sequences):
        raise ValueError("every sequence needs at least two items")


#: One entry of an accountant's history, as Opacus keeps it: (noise multiplier, sample rate,
#: steps).
AccountedSteps = tuple[float, float, int]


def poisson_sample(
    rows: Sequence[Sequence[int]], rate: float, generator: torch.Generator
) -> list[Sequence[int]]:
    """Each of ``rows`` independently with probability ``rate``: the sampling accounted for.

    Examples:
        >>> rng = torch.Generator().manual_seed(0)
        >>> len(poisson_sample([[1, 2]] * 1000, 0.1, rng))
        100
        >>> poisson_sample([[1, 2], [3, 4]], 1.0, rng)
        [[1, 2], [3, 4]]
    """
    kept = torch.rand(len(rows), generator=generator) < rate
    return [row for row, keep in zip(rows, kept.tolist(), strict=True) if keep]


@dataclass(frozen=True)
class OnlinePrivacy:
    """Settings of DP-SGD for stream updates (see the module docstring).

    Attributes:
        noise_multiplier: sigma; each step's noise has standard deviation sigma * C.
        max_grad_norm: per-session clipping norm C.
        delta: the delta epsilon is reported at; keep it well below 1 / (sessions).
        epsilon_budget: the lifetime cap: no step is taken that would take the
            epsilon of the whole history (``prior`` included) past it.
        sample_rate: q, the probability that a session in the pool is in a step.
        negatives: shared negatives drawn per step (0 = full softmax).
    """

    noise_multiplier: float
    max_grad_norm: float
    delta: float
    epsilon_budget: float
    sample_rate: float = 1.0
    negatives: int = 0

    def __post_init__(self) -> None:
        for name in ("noise_multiplier", "max_grad_norm", "epsilon_budget"):
            if not 0 < getattr(self, name) < math.inf:
                raise ValueError(f"{name} must be finite and > 0, got {getattr(self, name)}")
        if not 0 < self.delta < 1:
            raise ValueError(f"delta must be in (0, 1), got {self.delta}")
        if not 0 < self.sample_rate <= 1:
            raise ValueError(f"sample_rate must be in (0, 1], got {self.sample_rate}")
        if self.negatives < 0:
            raise ValueError(f"negatives must be >= 0, got {self.negatives}")


class OnlineDPSGD:
    """Poisson-sampled DP-SGD steps on a model that serves between them, within a lifetime cap.

    Each step adds Opacus' hooks and per-sample attention
    (:class:`model.training.attention.AttentionSwap`) to ``model`` and removes them after, so
    between steps it is a plain scorer in eval mode, as fast as one without hooks.
    Sampling, noise and negatives come from ``generator``, seeded from the OS's entropy
    unless a test injects one (a known seed would let anyone replay the sample and the
    noise). torch's generator is not a CSPRNG: Opacus' ``secure_mode`` needs
    ``torchcsprng``, which is not built for the torch we use.

    Args:
        model: the scorer, updated in place.
        optimizer: over :func:`model.training.private.trained_parameters` (wrapped by Opacus).
        privacy: sigma, C, delta, q and the lifetime cap.
        batch_size: the fixed divisor of each step's noisy sum of gradients (about
            q times the pool's size).
        prior: the accountant history of the steps the model's lineage took before
            this run; epsilon is computed over it and this run's steps together.
        generator: for tests only: seeds sampling, noise and negatives (default: OS entropy).

    Examples:
        >>> from model.config import ScorerConfig
        >>> from model.training.dp_sgd import trained_parameters
        >>> model = SequenceScorer(ScorerConfig(n_items=10, d_model=8, n_heads=2)).eval()
        >>> privacy = OnlinePrivacy(
        ...     noise_multiplier=1.0, max_grad_norm=1.0, delta=1e-5, epsilon_budget=8.0,
        ...     sample_rate=0.5,
        ... )
        >>> optimizer = torch.optim.Adam(trained_parameters(model), lr=1e-3)
        >>> dp = OnlineDPSGD(model, optimizer, privacy, batch_size=1, prior=[(1.0, 0.5, 3)])
        >>> sampled = dp.step([[1, 2, 3], [4, 5]])
        >>> dp.steps, dp.history, model.training
        (1, [(1.0, 0.5, 4)], False)
    """

    def __init__(
        self,
        model: SequenceScorer,
        optimizer: torch.optim.Optimizer,
        privacy: OnlinePrivacy,
        *,
        batch_size: int,
        prior: Sequence[AccountedSteps] = (),
        generator: torch.Generator | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self._model = model
        self._privacy = privacy
        self._batch_size = batch_size
        self._rng = generator or torch.Generator().manual_seed(secrets.randbits(63))
        self._swap = AttentionSwap(model)
        # Opacus divides each noisy sum by the loader's batch size.
        loader = DataLoader(TensorDataset(torch.arange(batch_size)), batch_size=batch_size)
        model.train()  # Opacus validates a model in training mode
        try:
            with self._swap.per_sample():
                _, self._hooks, self._optimizer, _ = attach_opacus(
                    model,
                    optimizer,
                    loader,
                    noise_multiplier=privacy.noise_multiplier,
                    max_grad_norm=privacy.max_grad_norm,
                    accountant="rdp",
                    generator=self._rng,
                )
            self._hooks.remove_hooks()  # back for each step only (see _hooked)
        finally:
            model.eval()
        self._accountant = RDPAccountant()
        self._accountant.history = [(float(s), float(q), int(n)) for s, q, n in prior]
        # Accounted here, at q, once per noisy step (Opacus' own hook would take the
        # loader's rate, 1, times its count of accumulated chunks).
        self._optimizer.attach_step_hook(self._account)
        self.steps = 0
        self._exhausted = self.epsilon_after(1) > privacy.epsilon_budget

    @property
    def exhausted(self) -> bool:
        """Whether the lifetime cap leaves no room for a step (none is taken any more)."""
        return self._exhausted

    @property
    def history(self) -> list[AccountedSteps]:
        """The lineage's accountant history: ``prior`` and this run's steps, composed."""
        return [(float(s), float(q), int(n)) for s, q, n in self._accountant.history]

    def step(self, pool: Sequence[Sequence[int]]) -> int | None:
        """One DP-SGD step on a Poisson sample of ``pool``, one row per session present.

        Args:
            pool: item-index sequences of at least two items each, one per session
                (the caller's duty); each is in the step with probability q.

        Returns:
            The number of rows sampled (not covered by the guarantee), or None when
            the step would exceed the lifetime cap (none taken).

        Raises:
            ValueError: an empty pool, or a row shorter than two items.
        """
        _check_rows(pool)
        if self._exhausted or self.epsilon_after(1) > self._privacy.epsilon_budget:
            self._exhausted = True
            return None
        sample = poisson_sample(pool, self._privacy.sample_rate, self._rng)
        with self._hooked():
            private_step(
                self._model, self._optimizer, list(sample), self._privacy.negatives, self._rng
            )
        self.steps += 1
        return len(sample)

    def spent(self) -> dict[str, Any]:
        """What the lineage's steps spent (this run's included), and the settings they ran with."""
        privacy = self._privacy
        history = self.history
        return {
            "epsilon": self.epsilon_after(0),
            "delta": privacy.delta,
            "budget": privacy.epsilon_budget,
            "noise_multiplier": privacy.noise_multiplier,
            "max_grad_norm": privacy.max_grad_norm,
            "batch_size": self._batch_size,
            "steps": sum(n for _, _, n in history),
            "sample_rate": privacy.sample_rate,
            "sampling": "poisson",
            "accountant_history": [list(entry) for entry in history],
            "mechanism": "gaussian",
            "accountant": self._accountant.mechanism(),
            "unit": UNIT,
            "secure_rng": False,
        }

    def epsilon_after(self, steps: int) -> float:
        """Epsilon at ``delta`` of the whole history after ``steps`` more steps at q."""
        accountant = RDPAccountant()
        accountant.history = list(self._accountant.history)
        for _ in range(steps):
            accountant.step(
                noise_multiplier=self._privacy.noise_multiplier,
                sample_rate=self._privacy.sample_rate,
            )
        if not accountant.history:
            return 0.0
        with benign_warnings_ignored():
            return float(accountant.get_epsilon(self._privacy.delta))

    def _account(self, _: DPOptimizer) -> None:
        self._accountant.step(
            noise_multiplier=self._privacy.noise_multiplier, sample_rate=self._privacy.sample_rate
        )

    @contextmanager
    def _hooked(self) -> Iterator[None]:
        """Inside: training mode, per-sample attention, Opacus' hooks; after: none of them.

        Forward hooks turn off ``nn.TransformerEncoderLayer``'s inference fast path
        (slower, and not bitwise the same scores), so they are only there for a step.
        """
        self._model.train()
        try:
            with self._swap.per_sample():
                self._hooks.add_hooks(loss_reduction="mean", batch_first=True)
                try:
                    yield
                finally:
                    self._hooks.remove_hooks()
        finally:
            self._model.eval()
