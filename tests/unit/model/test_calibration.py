"""ClickCalibrator: fitted rates by rank, monotone, zero past the depth, round trip, DP fit."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from model.calibration import (
    PRIVATE_CONTRIBUTION,
    ClickCalibrator,
    RankOutcomes,
    fit_calibrator,
    fit_private_calibrator,
)
from model.checkpoint import load_checkpoint, save_calibrator
from model.serving.baseline import CooccurrenceRecommender
from model.serving.scorers import CheckpointScorer
from model.threshold import public_mechanism

EDGES = (0, 1, 2, 4)


def outcomes(
    clicks: list[int],
    *,
    lengths: list[int] | None = None,
    purchases: list[tuple[int, int]] = (),  # type: ignore[assignment]
    intent: list[float] | None = None,
) -> RankOutcomes:
    """Outcomes of ``len(clicks)`` cases: (case, rank) purchases, lists of 4 by default."""
    return RankOutcomes(
        lengths=np.asarray(lengths or [4] * len(clicks), dtype=np.int64),
        clicks=np.asarray(clicks, dtype=np.int64),
        purchase_ranks=np.asarray([rank for _, rank in purchases], dtype=np.int64),
        purchase_cases=np.asarray([case for case, _ in purchases], dtype=np.int64),
        intent=None if intent is None else np.asarray(intent),
    )


def test_rates_are_clicks_over_positions_shown_per_bucket() -> None:
    # 10 lists: 4 clicks at rank 0, 2 at rank 1, 2 at ranks 2-3, 2 nowhere.
    fitted = fit_calibrator(outcomes([0, 0, 0, 0, 1, 1, 2, 3, -1, -1]), edges=EDGES)
    assert fitted.clicks == pytest.approx((0.4, 0.2, 2 / 20))
    grid = fitted.probabilities(np.array([[0, 1], [2, 3]]))
    assert grid.shape == (2, 2) and grid.ravel().tolist() == pytest.approx([0.4, 0.2, 0.1, 0.1])
    assert fitted.cases == 10 and fitted.epsilon is None


def test_short_lists_count_only_the_positions_they_had() -> None:
    # Two lists of length 1 never showed ranks 1-3: those rates come from the other two.
    fitted = fit_calibrator(outcomes([0, 0, 0, 1], lengths=[1, 1, 4, 4]), edges=EDGES)
    assert fitted.clicks == pytest.approx((0.75, 0.5, 0.0))


def test_a_rank_that_beats_the_one_above_is_pooled_with_it() -> None:
    # Raw rates 0.1 at rank 0 and 0.3 at rank 1: a list's second item is not worth
    # more than its first, so both get the pooled 0.2.
    clicks = [0] + [1] * 3 + [-1] * 6
    fitted = fit_calibrator(outcomes(clicks), edges=EDGES)
    assert fitted.clicks[:2] == pytest.approx((0.2, 0.2))


@given(
    st.lists(st.integers(min_value=-1, max_value=120), min_size=1, max_size=200),
    st.integers(min_value=1, max_value=100),
)
def test_fitted_rates_never_rise_with_rank_and_are_probabilities(
    clicks: list[int], length: int
) -> None:
    clicks = [c if c < length else -1 for c in clicks]
    fitted = fit_calibrator(outcomes(clicks, lengths=[length] * len(clicks)))
    p = fitted.probabilities(np.arange(150))
    assert np.all(np.diff(p) <= 0) and np.all((p >= 0) & (p <= 1))
    # A bucket no list reached claims nothing.
    unreached = min(edge for edge in fitted.edges if edge >= length)
    assert np.all(p[unreached:] == 0)


def test_ranks_past_the_depth_get_zero_and_negative_ranks_are_refused() -> None:
    fitted = fit_calibrator(outcomes([0, 3]), edges=EDGES)
    assert fitted.depth == 4
    assert fitted.probabilities(np.array([3, 4, 1000])).tolist()[1:] == [0.0, 0.0]
    assert fitted.purchase_probabilities(np.array([4]), np.array([0.5])).tolist() == [0.0]
    with pytest.raises(ValueError, match="ranks"):
        fitted.probabilities(np.array([-1]))
    with pytest.raises(ValueError, match="intent"):
        fitted.purchase_probabilities(np.array([0]), np.array([1.5]))


def test_purchases_rise_with_intent_and_still_sum_to_what_was_bought() -> None:
    # 20 browsing shoppers (intent 0.01) bought 1 first-ranked item, 20 with a cart
    # (intent 0.3) bought 5.
    intent = [0.01] * 20 + [0.3] * 20
    bought = [(0, 0)] + [(20 + i, 0) for i in range(5)]
    fitted = fit_calibrator(outcomes([-1] * 40, purchases=bought, intent=intent), edges=EDGES)
    assert fitted.purchases[0] == pytest.approx(6 / 40)
    low, high = fitted.purchase_probabilities(np.array([0, 0]), np.array([0.01, 0.3]))
    assert low == pytest.approx(1 / 20) and high == pytest.approx(5 / 20)
    # Between the fitted intents the lift is linear; beyond them it stays at the ends.
    middle, beyond = fitted.purchase_probabilities(np.array([0, 0]), np.array([0.155, 0.9]))
    assert middle == pytest.approx(3 / 20) and beyond == pytest.approx(high)


def test_round_trip_through_json_and_refusals() -> None:
    fitted = fit_calibrator(
        outcomes([0, 1, -1], purchases=[(0, 0)], intent=[0.1, 0.2, 0.2]), edges=EDGES
    )
    assert ClickCalibrator.from_dict(json.loads(json.dumps(fitted.to_dict()))) == fitted
    rising = {**fitted.to_dict(), "clicks": [0.1, 0.2, 0.0]}
    with pytest.raises(ValueError, match="must not increase"):
        ClickCalibrator.from_dict(rising)
    with pytest.raises(ValueError, match="not a calibrator"):
        ClickCalibrator.from_dict({"edges": [0, 1]})
    with pytest.raises(ValueError, match="edges"):
        ClickCalibrator(edges=(1, 2), clicks=(0.1,), purchases=(0.0,))


def test_a_checkpoint_carries_its_calibrator_and_an_older_one_has_none(
    tmp_path: Path, tiny_checkpoint: Callable[..., Path]
) -> None:
    run = tiny_checkpoint(tmp_path / "run")
    old = load_checkpoint(run)
    assert old.calibrator is None and CheckpointScorer(old).calibrator is None
    fitted = fit_calibrator(outcomes([0, 1]), edges=EDGES)
    save_calibrator(old.path, fitted)
    loaded = load_checkpoint(run)
    assert loaded.calibrator == fitted and CheckpointScorer(loaded).calibrator == fitted
    assert CooccurrenceRecommender().calibrator is None  # the stream baseline: no slot
    (old.path / "calibration.json").write_text('{"edges": [0, 1]}')
    with pytest.raises(ValueError, match="not a calibrator"):
        load_checkpoint(run)


def test_a_private_fit_bounds_each_case_and_spends_what_it_says() -> None:
    # Case 0 bought three listed items: a private fit counts its best-ranked one only,
    # so a case moves the released counts by at most PRIVATE_CONTRIBUTION in L1.
    many = outcomes([0] * 400 + [1] * 200 + [-1] * 400, purchases=[(0, 0), (0, 1), (0, 2)])
    fitted, spend = fit_private_calibrator(many, epsilon=2.0, list_length=4, edges=EDGES)
    assert spend["epsilon"] == 2.0 and spend["delta"] == 0.0
    assert float(public_mechanism(PRIVATE_CONTRIBUTION, 2.0).map(PRIVATE_CONTRIBUTION)) <= 2.0
    assert fitted is not None and fitted.epsilon == 2.0 and fitted.cases == spend["cases"]
    assert abs(fitted.cases - 1000) < 40  # Laplace of scale 1.5: far inside
    assert fitted.clicks[0] == pytest.approx(0.4, abs=0.02)
    assert fitted.clicks[1] == pytest.approx(0.2, abs=0.02)
    assert fitted.purchases[0] <= 0.01  # one purchase in 1,000 lists, plus noise
    assert not fitted.intent_points  # intents would need a release of their own


def test_a_private_fit_whose_noisy_count_is_not_positive_fits_nothing() -> None:
    # At epsilon 0.01 (scale 300) a count of 1 comes out <= 0 about half the time.
    found = [
        fit_private_calibrator(outcomes([0]), epsilon=0.01, list_length=4, edges=EDGES)
        for _ in range(30)
    ]
    assert any(calibrator is None for calibrator, _ in found)
    assert all(spend["epsilon"] == 0.01 for _, spend in found)
