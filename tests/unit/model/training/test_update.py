"""Online DP-SGD (model/training/update.py): Poisson sampling, accounting, cap, noise, serving."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from opacus.accountants import RDPAccountant
from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent

from model.config import ScorerConfig
from model.scorer import SequenceScorer
from model.serving.ranker import top_items
from model.training.dp_sgd import trained_parameters
from model.training.update import OnlineDPSGD, OnlinePrivacy, poisson_sample
from model.vocab import ItemVocab

N_ITEMS = 200
ROWS = [[1, 2, 3, 4], [5, 6], [7, 8, 9], [10, 11, 12, 13, 14], [15, 16]]
SIGMA, DELTA = 1.0, 1e-5


def _scorer(seed: int = 0) -> SequenceScorer:
    torch.manual_seed(seed)
    config = ScorerConfig(
        n_items=N_ITEMS, d_model=16, n_heads=2, max_len=8, dropout=0.0, embedding_dropout=0.0
    )
    return SequenceScorer(config).eval()


def _privacy(**options: Any) -> OnlinePrivacy:
    settings = {
        "noise_multiplier": SIGMA,
        "max_grad_norm": 1.0,
        "delta": DELTA,
        "epsilon_budget": 100.0,
        **options,
    }
    return OnlinePrivacy(**settings)


def _dp(
    model: SequenceScorer,
    privacy: OnlinePrivacy,
    *,
    seed: int = 0,
    optimizer: torch.optim.Optimizer | None = None,
    prior: list[tuple[float, float, int]] | None = None,
) -> OnlineDPSGD:
    optimizer = optimizer or torch.optim.Adam(trained_parameters(model), lr=1e-2)
    return OnlineDPSGD(
        model,
        optimizer,
        privacy,
        batch_size=len(ROWS),
        prior=prior or [],
        generator=torch.Generator().manual_seed(seed),
    )


def _rdp_epsilon(steps: int, q: float = 1.0) -> float:
    """Epsilon of ``steps`` subsampled Gaussian mechanisms at rate q, by Opacus' RDP analysis."""
    orders = RDPAccountant.DEFAULT_ALPHAS
    rdp = compute_rdp(q=q, noise_multiplier=SIGMA, steps=steps, orders=orders)
    return float(get_privacy_spent(orders=orders, rdp=rdp, delta=DELTA)[0])


def _weights(model: SequenceScorer) -> list[torch.Tensor]:
    return [p.detach().clone() for p in trained_parameters(model)]


@pytest.mark.parametrize(
    "settings",
    [
        {"noise_multiplier": 0.0},
        {"max_grad_norm": -1.0},
        {"epsilon_budget": math.inf},
        {"delta": 1.0},
        {"negatives": -1},
        {"sample_rate": 0.0},
        {"sample_rate": 1.5},
    ],
)
def test_invalid_online_privacy_settings_raise(settings: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        _privacy(**settings)


def test_each_step_moves_the_weights_and_epsilon_is_rdp_of_t_steps_at_q_1() -> None:
    model = _scorer()
    dp = _dp(model, _privacy())
    assert dp.spent()["epsilon"] == 0.0
    epsilons = []
    for steps in (1, 2, 3):
        before = _weights(model)
        assert dp.step(ROWS) == len(ROWS)  # q = 1: every session of the pool
        moved = [not torch.equal(b, p) for b, p in zip(before, _weights(model), strict=True)]
        assert all(moved)  # noise reaches every parameter
        spent = dp.spent()
        assert spent["steps"] == steps and spent["sample_rate"] == 1.0
        assert spent["epsilon"] == pytest.approx(_rdp_epsilon(steps), rel=1e-9)
        epsilons.append(spent["epsilon"])
    assert epsilons == sorted(epsilons) and epsilons[0] < epsilons[-1]
    assert spent["unit"] == "session" and spent["accountant"] == "rdp"
    assert not model.embed.items.weight[0].any()


def test_the_step_that_would_exceed_the_budget_is_refused() -> None:
    budget = (_rdp_epsilon(2) + _rdp_epsilon(3)) / 2
    model = _scorer()
    dp = _dp(model, _privacy(epsilon_budget=budget))
    assert dp.step(ROWS) is not None and dp.step(ROWS) is not None
    assert not dp.exhausted
    before = _weights(model)
    assert dp.step(ROWS) is None
    assert dp.exhausted and dp.step(ROWS) is None
    assert all(torch.equal(b, p) for b, p in zip(before, _weights(model), strict=True))
    spent = dp.spent()
    assert spent["steps"] == 2 and spent["epsilon"] <= spent["budget"] == budget


def test_the_noise_has_standard_deviation_sigma_c_over_the_batch_size() -> None:
    """Same data and weights, other noise seeds: SGD(lr=1) steps differ by the noise alone."""
    privacy = _privacy(noise_multiplier=0.5, max_grad_norm=2.0)
    moves = []
    for seed in (1, 1, 2):
        model = _scorer()
        before = model.embed.items.weight.detach().clone()
        dp = _dp(
            model, privacy, seed=seed, optimizer=torch.optim.SGD(trained_parameters(model), lr=1.0)
        )
        dp.step(ROWS)
        moves.append((model.embed.items.weight.detach() - before)[1:])  # row 0 is padding
    assert torch.equal(moves[0], moves[1])  # the injected generator makes it repeatable
    expected = math.sqrt(2) * 0.5 * 2.0 / len(ROWS)  # the difference of two noise draws
    assert float((moves[2] - moves[0]).std()) == pytest.approx(expected, rel=0.1)


def test_between_steps_the_model_scores_as_a_plain_copy_of_its_weights() -> None:
    model = _scorer()
    dp = _dp(model, _privacy())
    dp.step(ROWS)
    assert not model.training
    assert type(model.blocks.layers[0].self_attn) is torch.nn.MultiheadAttention
    assert not any(m._forward_hooks or m._backward_hooks for m in model.modules())
    copy = SequenceScorer(model.config)
    copy.load_state_dict(model.state_dict())
    vocab = ItemVocab.build([[f"i{n}" for n in range(1, N_ITEMS)]])
    prefixes = [[vocab.ids[i] for i in row] for row in ROWS]
    assert top_items(model, vocab, prefixes, k=10) == top_items(copy.eval(), vocab, prefixes, k=10)
    dp.step(ROWS)  # and it still steps after serving
    assert dp.spent()["steps"] == 2


def test_poisson_sampling_keeps_each_row_independently_at_the_rate() -> None:
    rng = torch.Generator().manual_seed(3)
    rows = [[n, n + 1] for n in range(20_000)]
    sizes = [len(poisson_sample(rows, 0.1, rng)) for _ in range(5)]
    assert all(abs(size - 2_000) < 4 * math.sqrt(20_000 * 0.1 * 0.9) for size in sizes)
    twice = [poisson_sample(rows[:2_000], 0.5, rng) for _ in range(2)]
    assert twice[0] != twice[1]  # a fresh sample each time
    assert len({tuple(row) for row in twice[0]}) == len(twice[0])  # never a row twice


def test_steps_sample_the_pool_at_q_and_are_accounted_at_q_after_the_prior() -> None:
    model = _scorer()
    pool = ROWS * 8  # 40 sessions
    dp = _dp(model, _privacy(sample_rate=0.25), seed=1)
    sizes = [dp.step(pool) for _ in range(6)]
    assert all(size is not None and size < len(pool) for size in sizes)
    assert 0.1 < sum(s or 0 for s in sizes) / (6 * len(pool)) < 0.4
    spent = dp.spent()
    assert spent["sample_rate"] == 0.25 and spent["sampling"] == "poisson"
    assert spent["accountant_history"] == [[SIGMA, 0.25, 6]]
    assert spent["epsilon"] == pytest.approx(_rdp_epsilon(6, q=0.25), rel=1e-9)
    assert spent["epsilon"] < _rdp_epsilon(6)  # amplification by sampling

    resumed = _dp(_scorer(), _privacy(sample_rate=0.25), seed=2, prior=dp.history)
    assert resumed.steps == 0 and resumed.epsilon_after(0) == spent["epsilon"]
    resumed.step(pool)
    assert resumed.history == [(SIGMA, 0.25, 7)] and resumed.steps == 1
    assert resumed.epsilon_after(0) == pytest.approx(_rdp_epsilon(7, q=0.25), rel=1e-9)


def test_a_prior_that_fills_the_cap_leaves_no_step() -> None:
    budget = (_rdp_epsilon(2) + _rdp_epsilon(3)) / 2
    dp = _dp(_scorer(), _privacy(epsilon_budget=budget), prior=[(SIGMA, 1.0, 2)])
    assert dp.exhausted and dp.step(ROWS) is None and dp.steps == 0
