"""One incremental step of the scorer: a gradient step on a micro-batch of sequences.

``online_learning`` decides when to call it and on what (new sessions mixed
with a replay buffer); this module only knows how to take the step, with the
same next-item loss as offline training (``model.training.train.next_item_loss``), or, with
:class:`OnlineDPSGD`, a differentially private one.

Online DP-SGD (:class:`OnlineDPSGD`, the machinery of :mod:`model.training.private`)
    The privacy unit is one **session** of the stream: the sequence of models the
    steps produce is (epsilon, delta)-DP with respect to adding or removing one
    session, as long as every step holds **at most one row of each session** (its
    clipped gradient bounds that session's influence on the step). The caller
    guarantees it (``online_learning.trainer`` keeps one prefix per session key).
    A user with k sessions is protected at about k * epsilon. The guarantee covers
    the stream only: the starting model's own training data are accounted for
    separately (e.g. the offline run's epsilon), and so is anything computed from
    the raw rows, such as the loss :meth:`OnlineDPSGD.step` returns.

    Accounting: a stream is not a fixed data set sampled with a known rate, so no
    privacy amplification by sampling is claimed; each step is a Gaussian mechanism
    at sample rate q = 1 (every session may be in every step), and Opacus' RDP
    accountant composes them. Each step's sum of clipped gradients gets noise of
    standard deviation sigma * C and is divided by the fixed ``batch_size`` (dividing
    by the actual number of rows would release that number without noise). Before
    each step the spend after it is computed; a step that would take epsilon past
    the budget is refused, and the model is updated no more.
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


@dataclass(frozen=True)
class OnlinePrivacy:
    """Settings of DP-SGD for stream updates (see the module docstring).

    Attributes:
        noise_multiplier: sigma; each step's noise has standard deviation sigma * C.
        max_grad_norm: per-session clipping norm C.
        delta: the delta epsilon is reported at; keep it well below 1 / (sessions).
        epsilon_budget: no step is taken that would spend more epsilon than this.
        negatives: shared negatives drawn per step (0 = full softmax).
    """

    noise_multiplier: float
    max_grad_norm: float
    delta: float
    epsilon_budget: float
    negatives: int = 0

    def __post_init__(self) -> None:
        for name in ("noise_multiplier", "max_grad_norm", "epsilon_budget"):
            if not 0 < getattr(self, name) < math.inf:
                raise ValueError(f"{name} must be finite and > 0, got {getattr(self, name)}")
        if not 0 < self.delta < 1:
            raise ValueError(f"delta must be in (0, 1), got {self.delta}")
        if self.negatives < 0:
            raise ValueError(f"negatives must be >= 0, got {self.negatives}")


class OnlineDPSGD:
    """DP-SGD steps on a model that serves between them, within an epsilon budget.

    Each step adds Opacus' hooks and per-sample attention
    (:class:`model.training.attention.AttentionSwap`) to ``model`` and removes them after, so
    between steps it is a plain scorer in eval mode, as fast as one without hooks.
    Noise and negatives come from ``generator``, seeded from the OS's entropy unless
    a test injects one (a known seed would let anyone replay the noise).

    Args:
        model: the scorer, updated in place.
        optimizer: over :func:`model.training.private.trained_parameters` (wrapped by Opacus).
        privacy: sigma, C, delta and the budget.
        batch_size: the fixed divisor of each step's noisy sum of gradients.
        generator: for tests only: seeds noise and negatives (default: OS entropy).

    Examples:
        >>> from model.config import ScorerConfig
        >>> from model.training.dp_sgd import trained_parameters
        >>> model = SequenceScorer(ScorerConfig(n_items=10, d_model=8, n_heads=2)).eval()
        >>> privacy = OnlinePrivacy(
        ...     noise_multiplier=1.0, max_grad_norm=1.0, delta=1e-5, epsilon_budget=8.0
        ... )
        >>> optimizer = torch.optim.Adam(trained_parameters(model), lr=1e-3)
        >>> dp = OnlineDPSGD(model, optimizer, privacy, batch_size=2)
        >>> loss = dp.step([[1, 2, 3], [4, 5]])
        >>> dp.spent()["steps"], model.training
        (1, False)
    """

    def __init__(
        self,
        model: SequenceScorer,
        optimizer: torch.optim.Optimizer,
        privacy: OnlinePrivacy,
        *,
        batch_size: int,
        generator: torch.Generator | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self._model = model
        self._privacy = privacy
        self._batch_size = batch_size
        self._rng = generator or torch.Generator().manual_seed(secrets.randbits(63))
        self._swap = AttentionSwap(model)
        # One batch of batch_size rows: Opacus divides by batch_size, accounts q = 1.
        loader = DataLoader(TensorDataset(torch.arange(batch_size)), batch_size=batch_size)
        model.train()  # Opacus validates a model in training mode
        try:
            with self._swap.per_sample():
                self._engine, self._hooks, self._optimizer, _ = attach_opacus(
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
        self._exhausted = False

    @property
    def exhausted(self) -> bool:
        """Whether a step was refused for the budget (no step is taken any more)."""
        return self._exhausted

    @property
    def steps(self) -> int:
        """DP steps taken so far."""
        return sum(int(steps) for _, _, steps in self._engine.accountant.history)

    def step(self, rows: Sequence[Sequence[int]]) -> float | None:
        """One DP-SGD step on ``rows``, at most one of each session (the caller's duty).

        Args:
            rows: item-index sequences of at least two items each.

        Returns:
            The mean loss of the rows (computed before noise: not covered by the
            guarantee), or None when the step would exceed the budget (none taken).

        Raises:
            ValueError: no rows, or one shorter than two items.
        """
        _check_rows(rows)
        if self._exhausted or self._epsilon(extra_steps=1) > self._privacy.epsilon_budget:
            self._exhausted = True
            return None
        with self._hooked():
            total = private_step(
                self._model, self._optimizer, list(rows), self._privacy.negatives, self._rng
            )
        return float(total) / len(rows)

    def spent(self) -> dict[str, Any]:
        """What the steps so far spent, and the settings they ran with."""
        privacy = self._privacy
        return {
            "epsilon": self._epsilon(extra_steps=0),
            "delta": privacy.delta,
            "budget": privacy.epsilon_budget,
            "noise_multiplier": privacy.noise_multiplier,
            "max_grad_norm": privacy.max_grad_norm,
            "batch_size": self._batch_size,
            "steps": self.steps,
            "sample_rate": 1.0,
            "mechanism": "gaussian",
            "accountant": self._engine.accountant.mechanism(),
            "unit": UNIT,
            "secure_rng": False,
        }

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

    def _epsilon(self, *, extra_steps: int) -> float:
        """Epsilon at ``delta`` after ``extra_steps`` more steps, on a copy of the history."""
        accountant = RDPAccountant()
        accountant.history = list(self._engine.accountant.history)
        for _ in range(extra_steps):
            accountant.step(noise_multiplier=self._privacy.noise_multiplier, sample_rate=1.0)
        if not accountant.history:
            return 0.0
        with benign_warnings_ignored():
            return float(accountant.get_epsilon(self._privacy.delta))
