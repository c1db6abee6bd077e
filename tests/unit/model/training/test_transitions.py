"""The served ranker's memory of a private run: which items follow which, released with DP."""

from __future__ import annotations

import math

import opendp.prelude as dp
import pytest

from model.training.transitions import bounded_counts, gaussian_threshold, private_transitions


def test_pairs_many_sessions_hold_are_released_and_a_single_sessions_pair_is_not() -> None:
    sessions = [[1, 2]] * 300 + [[5, 6]]
    released, spend = private_transitions(sessions, n_items=8, epsilon=2.0, delta=1e-6)
    assert released[1, 2] == pytest.approx(300 / math.sqrt(2), abs=40)
    assert released[2, 1] > 0
    assert released[5, 6] == released[6, 5] == 0  # one session's pair never comes out
    assert spend["epsilon"] == 2.0 and spend["delta"] == 1e-6 and spend["pairs"] == 2
    assert released.min() >= 0


def test_a_session_adds_to_at_most_max_pairs_with_an_l2_norm_of_at_most_one() -> None:
    long_session = list(range(1, 40))
    counts = bounded_counts([long_session], n_items=50, window=3, max_pairs=20)
    assert len(counts) == 20
    assert sum(v * v for v in counts.values()) <= 1.0
    assert max(counts.values()) <= 1.0
    # The most recent pairs are kept: the last two items, both ways.
    assert 38 * 50 + 39 in counts and 39 * 50 + 38 in counts
    assert 1 * 50 + 2 not in counts


@pytest.mark.parametrize("epsilon", [0.5, 8.0])
def test_opendp_certifies_the_release_at_its_epsilon_and_delta(epsilon: float) -> None:
    measurement, scale, threshold = gaussian_threshold(epsilon, 1e-5, 50)
    certified = dp.c.make_fix_delta(dp.c.make_zCDP_to_approxDP(measurement), 1e-5)
    spent, delta = certified.map((50, 1.0, 1.0))
    assert spent <= epsilon and delta == 1e-5
    assert spent > 0.95 * epsilon  # not much more noise than the target needs
    assert threshold > 1.0 + 3 * scale
