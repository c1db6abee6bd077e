"""Differential privacy: budgets never exceeded, calibrated OpenDP noise, clipping.

The statistical tests cannot be seeded: OpenDP samples from the operating
system's CSPRNG by design. They instead use enough samples and a 6-sigma
tolerance on each estimator, so a false failure has probability ~1e-9 per
check, while a scale off by 10 % would still fail.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from fractions import Fraction

import numpy as np
import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from model import threshold as privacy
from model.threshold import MICRO, ReleasedTwice, ThresholdCounts, epsilon_units
from streams.pipeline.dp import ContributionBound, PrivacyBudget

N = 20_000
SIGMAS = 6.0

epsilons = st.floats(min_value=1e-6, max_value=5.0)
limits = st.floats(min_value=1e-3, max_value=10.0)
windows = st.floats(min_value=1.0, max_value=1000.0)
times = st.floats(min_value=-1e4, max_value=1e5)
requests = st.lists(st.tuples(epsilons, times), max_size=60)


def _discrete_laplace_abs(scale: float) -> tuple[float, float]:
    """Mean and std of ``|X|`` for discrete Laplace: P(k) ~ exp(-|k| / scale)."""
    a = math.exp(-1.0 / scale)
    mean = 2 * a / (1 - a * a)
    second = 2 * a / (1 - a) ** 2
    return mean, math.sqrt(second - mean * mean)


def _laplace_abs(scale: float) -> tuple[float, float]:
    """Mean and std of ``|X|`` for Laplace(scale): ``|X|`` is Exponential(scale)."""
    return scale, scale


def _assert_scale(
    noise: np.ndarray, scale: float, moments: Callable[[float], tuple[float, float]]
) -> None:
    """The mean of ``|noise|`` matches ``scale`` within 6 sigma of the estimator."""
    mean, std = moments(scale)
    tolerance = SIGMAS * std / math.sqrt(noise.size)
    # Power: a scale 10 % off moves the expected mean twice as far as the tolerance.
    assert tolerance < abs(moments(1.1 * scale)[0] - mean) / 2
    assert abs(float(np.abs(noise).mean()) - mean) < tolerance
    # And the noise is centred: E X = 0, E X^2 = mean^2 + std^2.
    assert abs(float(noise.mean())) < SIGMAS * math.hypot(mean, std) / math.sqrt(noise.size)


# Budget ----------------------------------------------------------------------


@given(limit=limits, window=windows, spends=requests)
@example(limit=0.3, window=1.0, spends=[(0.3, 0.0)])  # regression: a limit is decimal, 3/10
def test_budget_is_never_exceeded_in_any_window(
    limit: float, window: float, spends: list[tuple[float, float]]
) -> None:
    budget = PrivacyBudget(limit_epsilon=limit, window_seconds=window)
    charged: defaultdict[float, Fraction] = defaultdict(Fraction)
    starts = [budget.window_start]
    for epsilon, now in spends:
        before = budget.to_list()
        if budget.try_spend(epsilon, now=now):
            charged[budget.window_start] += Fraction(epsilon_units(epsilon), MICRO)
        else:
            assert budget.to_list() == before  # a refused spend changes nothing
        starts.append(budget.window_start)
    # Budgets are decimal: a limit written 0.3 is 3/10, not the binary float nearest to it.
    assert all(total <= Fraction(repr(limit)) for total in charged.values())
    assert starts == sorted(starts)  # windows never reopen


@given(
    limit=limits,
    window=windows,
    spends=st.lists(st.tuples(epsilons, st.floats(min_value=0.0, max_value=1e5)), max_size=30),
)
def test_a_new_window_starts_with_the_full_budget(
    limit: float, window: float, spends: list[tuple[float, float]]
) -> None:
    budget = PrivacyBudget(limit_epsilon=limit, window_seconds=window)
    for epsilon, now in sorted(spends, key=lambda spend: spend[1]):
        start = math.floor(now / window) * window
        new_window = start > budget.window_start
        accepted = budget.try_spend(epsilon, now=now)
        if new_window:
            assert accepted == (epsilon_units(epsilon) <= budget.limit_units)
        if accepted:
            assert budget.window_start == start  # aligned to multiples of the window


def test_budget_example_and_window_roll() -> None:
    budget = PrivacyBudget(limit_epsilon=1.0, window_seconds=100.0)
    assert [budget.try_spend(0.1, now=5.0) for _ in range(11)] == [True] * 10 + [False]
    assert budget.spent_units == MICRO
    assert not budget.try_spend(0.1, now=50.0)  # a late event in the same window
    assert budget.try_spend(1.0, now=100.0)
    assert budget.to_list() == [100.0, MICRO]
    assert not budget.try_spend(1e-9, now=3.0)  # late events charge the current window


@given(
    start=st.floats(allow_nan=False, allow_infinity=False),
    spent=st.integers(min_value=0, max_value=2**53),
)
def test_budget_round_trips_through_json(start: float, spent: int) -> None:
    budget = PrivacyBudget(2.0, 60.0, start, spent)
    raw = orjson.loads(orjson.dumps(budget.to_list()))
    assert PrivacyBudget.from_list(raw, limit_epsilon=2.0, window_seconds=60.0) == budget


@pytest.mark.parametrize(
    "state", [[], [0.0], [0.0, 1.5], [0.0, -1], [math.nan, 0], [0.0, True], [0.0, 1, 2]]
)
def test_malformed_budget_state_is_refused(state: list[float]) -> None:
    with pytest.raises(ValueError):
        PrivacyBudget.from_list(state, limit_epsilon=1.0, window_seconds=60.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"limit_epsilon": 0.0, "window_seconds": 60.0},
        {"limit_epsilon": 1e-7, "window_seconds": 60.0},
        {"limit_epsilon": math.inf, "window_seconds": 60.0},
        {"limit_epsilon": 1.0, "window_seconds": 0.0},
        {"limit_epsilon": 1.0, "window_seconds": math.nan},
    ],
)
def test_bad_budget_configuration_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        PrivacyBudget(**kwargs)


@pytest.mark.parametrize("epsilon", [0.0, -1.0, math.nan, math.inf, True])
def test_bad_epsilons_are_refused(epsilon: float) -> None:
    budget = PrivacyBudget(limit_epsilon=1.0, window_seconds=60.0)
    with pytest.raises(ValueError):
        budget.try_spend(epsilon, now=0.0)
    with pytest.raises(ValueError):
        ThresholdCounts(max_keys=1).release(epsilon=epsilon, delta=1e-6)
    with pytest.raises(ValueError):
        budget.try_spend(0.1, now=math.nan)


def test_epsilons_are_charged_in_exact_micro_units() -> None:
    assert [epsilon_units(e) for e in (0.1, 0.7, 1.0, 1e-6, 1e-9, 0.1234567)] == [
        100_000,
        700_000,
        1_000_000,
        1,
        1,
        123_457,
    ]
    assert PrivacyBudget(limit_epsilon=0.1234567, window_seconds=1.0).limit_units == 123_456


@settings(max_examples=40, deadline=None)
@given(epsilon=epsilons, max_keys=st.integers(min_value=1, max_value=50))
def test_opendp_certifies_no_more_than_the_charge(epsilon: float, max_keys: int) -> None:
    # OpenDP's own privacy map is the authority on what a measurement costs.
    charge = Fraction(epsilon_units(epsilon), MICRO)
    loss = Fraction(
        privacy.threshold_mechanism(max_keys, epsilon, 1e-6).map((max_keys, max_keys, 1))[0]
    )
    assert loss <= charge
    assert loss <= Fraction(epsilon)


# Noise scale -----------------------------------------------------------------


def test_popularity_noise_has_scale_max_keys_over_epsilon() -> None:
    counts, keys, true = ThresholdCounts(max_keys=4), N, 80  # far above the threshold
    for n in range(keys):
        for _ in range(true):
            counts.add(f"i{n}")
    released = counts.release(epsilon=2.0, delta=1e-6)
    assert len(released) == keys
    _assert_scale(np.array(list(released.values())) - true, 4 / 2.0, _discrete_laplace_abs)


# Popularity counts -----------------------------------------------------------


@given(
    events=st.lists(st.tuples(st.sampled_from("abcdefgh"), times), max_size=60),
    max_items=st.integers(min_value=1, max_value=4),
    window=windows,
)
def test_each_user_adds_at_most_max_items_distinct_items_per_window(
    events: list[tuple[str, float]], max_items: int, window: float
) -> None:
    budget = PrivacyBudget(limit_epsilon=10.0, window_seconds=window)
    bound = ContributionBound(max_items=max_items, window_seconds=window)
    admitted: defaultdict[float, list[str]] = defaultdict(list)
    for item, now in events:
        if bound.admit(item, now=now, budget=budget, epsilon=0.5):
            admitted[bound.window_start].append(item)
    for items in admitted.values():
        assert len(items) == len(set(items)) <= max_items
    assert budget.spent_units <= 500_000 * len(admitted)


def test_contributions_charge_once_per_window_and_respect_the_budget() -> None:
    budget = PrivacyBudget(limit_epsilon=1.0, window_seconds=1000.0)
    bound = ContributionBound(max_items=3, window_seconds=100.0)
    assert [bound.admit(i, now=1.0, budget=budget, epsilon=0.6) for i in "abca"] == [
        True,
        True,
        True,
        False,
    ]
    assert budget.spent_units == 600_000  # once for the whole window
    assert not bound.admit("d", now=50.0, budget=budget, epsilon=0.6)  # window full
    assert not bound.admit("d", now=150.0, budget=budget, epsilon=0.6)  # budget spent
    assert bound.to_list() == [0.0, ["a", "b", "c"]]  # a refusal changed nothing
    assert bound.admit("d", now=1050.0, budget=budget, epsilon=0.6)
    assert bound.to_list() == [1000.0, ["d"]]
    raw = orjson.loads(orjson.dumps(bound.to_list()))
    assert ContributionBound.from_list(raw, max_items=3, window_seconds=100.0) == bound
    with pytest.raises(ValueError):
        ContributionBound.from_list([0.0], max_items=3, window_seconds=100.0)
    with pytest.raises(ValueError):
        ContributionBound(max_items=0, window_seconds=100.0)


def test_threshold_counts_hide_rare_keys_and_release_once() -> None:
    counts = ThresholdCounts(max_keys=2)
    for key in ["common"] * 500 + ["only-one-user"]:
        counts.add(key)
    released = counts.release(epsilon=1.0, delta=1e-6)
    assert set(released) == {"common"}  # a key of one contributor passes w.p. <= delta
    assert abs(released["common"] - 500) < 100
    with pytest.raises(ReleasedTwice):
        counts.release(epsilon=1.0, delta=1e-6)
    assert ThresholdCounts(max_keys=1).release(epsilon=1.0, delta=1e-6) == {}
    with pytest.raises(ValueError):
        ThresholdCounts(max_keys=1).release(epsilon=1.0, delta=0.0)


def test_threshold_mechanism_is_certified_within_the_charge() -> None:
    measurement = privacy.threshold_mechanism(3, 0.7, 1e-7)
    epsilon, delta = measurement.map((3, 3, 1))
    assert epsilon <= 0.7 and delta <= 1e-7


def test_measurements_are_built_once_per_setting() -> None:
    privacy.threshold_mechanism(2, 0.37, 1e-6)
    hits = privacy.threshold_mechanism.cache_info().hits
    privacy.threshold_mechanism(2, 0.37, 1e-6)
    assert privacy.threshold_mechanism.cache_info().hits == hits + 1
