"""Expected calibration error and reliability bins on cases whose answer is known."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from model.evaluation.calibration import expected_calibration_error, log_loss, reliability_bins


def test_a_known_case_equal_mass_and_equal_width() -> None:
    # Predictions 0.2 (observed 1 in 4) and 0.6 (observed 1 in 4): gaps 0.05 and 0.35.
    predicted = [0.2] * 4 + [0.6] * 4
    outcomes = [1, 0, 0, 0, 1, 0, 0, 0]
    assert expected_calibration_error(predicted, outcomes, bins=2) == pytest.approx(0.2)
    width = reliability_bins(predicted, outcomes, bins=10, binning="width")
    assert [(b.count, b.predicted, b.observed) for b in width] == [(4, 0.2, 0.25), (4, 0.6, 0.25)]
    assert expected_calibration_error(predicted, outcomes, binning="width") == pytest.approx(0.2)


def test_calibrated_predictions_score_near_zero_and_a_constant_offset_scores_it() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 0.1, 200_000)
    y = rng.uniform(size=p.size) < p
    assert expected_calibration_error(p, y) < 0.002
    assert expected_calibration_error(np.minimum(p * 2, 1), y) == pytest.approx(0.05, abs=0.002)
    # Equal-mass bins each hold a tenth of the predictions, in order.
    found = reliability_bins(p, y)
    assert [b.count for b in found] == [20_000] * 10
    assert all(a.high <= b.low for a, b in itertools.pairwise(found))


def test_log_loss_rewards_telling_cases_apart() -> None:
    y = np.array([0, 0, 0, 1])
    assert log_loss([0.25] * 4, y) > log_loss([0.01, 0.01, 0.01, 0.97], y)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="one length"):
        expected_calibration_error([0.1, 0.2], [1])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        expected_calibration_error([1.5], [1])
    with pytest.raises(ValueError, match="binning"):
        reliability_bins([0.1], [1], binning="quantile")  # type: ignore[arg-type]
