"""DP-SGD plumbing shared by offline and online training: Opacus attached to the scorer.

:func:`attach_opacus` wraps a model, optimizer and loader for Poisson-sampled DP-SGD;
:func:`private_step` takes one noisy step on one sample of sessions, in length-sorted
physical chunks. Offline training (:mod:`model.training.private`) and online updates
(:mod:`model.training.update`) both use them. Per-session gradients need a per-session
loss (:func:`session_losses`) and per-sample attention (:mod:`model.training.attention`).
What the guarantee covers is in docs/privacy.md.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

import torch
import torch.nn.functional as F
from opacus import PrivacyEngine
from opacus.grad_sample.utils import register_grad_sampler
from opacus.optimizers import DPOptimizer
from torch import nn
from torch.utils.data import DataLoader

from model.batches import HistoryBatch, pad_histories
from model.scorer import SequenceScorer
from model.training.train import Accountant

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
    queries = F.normalize(model.queries(model.hidden(batch), batch)[:, :-1], dim=-1)
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
    """Parameters the per-session loss reaches (all but a repeat head).

    Opacus needs a per-sample gradient for every parameter its optimizer updates;
    :func:`session_losses` trains no repeat head, so DP runs are built without one.
    """
    head = {id(p) for p in model.repeat_head.parameters()} if model.repeat_head else set()
    return [p for p in model.parameters() if id(p) not in head]


@contextmanager
def benign_warnings_ignored() -> Iterator[None]:
    """Silence :data:`BENIGN_WARNINGS` (normal operation of Opacus) inside the block."""
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


def private_step(
    model: SequenceScorer,
    optimizer: DPOptimizer,
    rows: list[Sequence[int]],
    n_negatives: int,
    rng: torch.Generator,
) -> torch.Tensor:
    """One DP-SGD step on one sample of sessions (at most one row each); the sum of their losses.

    ``n_negatives`` uniform items are drawn for the step (0: the full softmax).
    """
    total = torch.zeros(())
    device = next(model.parameters()).device
    n_items = model.config.n_items
    negatives = (
        torch.randint(1, n_items, (n_negatives,), generator=rng)
        if n_negatives
        else torch.arange(1, n_items)  # full softmax
    ).to(device)
    pieces = chunks(rows, _physical_rows(optimizer, device), model.config.max_len)
    if not pieces:
        # An empty Poisson sample: a noise-only step, counted like any other.
        for p in optimizer.params:
            p.grad_sample = torch.zeros((0, *p.shape), device=p.device, dtype=p.dtype)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    for i, chunk in enumerate(pieces):
        batch = pad_histories(chunk, max_len=model.config.max_len).to(device)
        losses = session_losses(model, batch, negatives)
        with benign_warnings_ignored():
            losses.mean().backward()  # type: ignore[no-untyped-call]
        # Clip and sum this chunk's per-session gradients; the last chunk adds noise.
        optimizer.signal_skip_step(do_skip=i < len(pieces) - 1)
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


def chunks(rows: list[Sequence[int]], size: int, max_len: int) -> list[list[Sequence[int]]]:
    """Rows sorted by length, in chunks of at most ``size`` and little padding.

    A Poisson sample mixes all lengths, and the DP loss and Opacus' per-sample
    gradients cost per padded position, so a chunk closes before its padded area
    would exceed ``PADDING_WASTE`` times its events.
    """
    out: list[list[Sequence[int]]] = [[]]
    events = 0
    for row in sorted(rows, key=len):
        width = min(len(row), max_len)  # the widest of its chunk so far
        chunk = out[-1]
        if chunk and (
            len(chunk) == size or (len(chunk) + 1) * width > PADDING_WASTE * (events + width)
        ):
            chunk = []
            out.append(chunk)
            events = 0
        chunk.append(row)
        events += width
    return [chunk for chunk in out if chunk]
