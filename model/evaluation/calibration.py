"""How well predicted probabilities match what happened: ECE and reliability bins.

A sponsored slot's expected value is bid x probability, so a probability that is
twice too high charges the wrong campaign and misprices the slot even when the
ranking is right. :func:`expected_calibration_error` is the mean gap between the
predicted and the observed rate over bins of the predictions, weighted by their
sizes; :func:`reliability_bins` lists those bins (a reliability diagram's points).

Bins are equal-mass by default (each holds about the same number of predictions,
cut in order of the predicted probability): click and purchase probabilities
crowd near 0, where equal-width bins would put nearly every prediction in the
first bin and hide the rest. ``binning="width"`` gives the classic equal-width
bins over [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

Binning = Literal["mass", "width"]


@dataclass(frozen=True)
class ReliabilityBin:
    """Predictions in one bin: their range, number, mean and the observed rate."""

    low: float
    high: float
    count: int
    predicted: float
    observed: float


def reliability_bins(
    predicted: npt.ArrayLike,
    outcomes: npt.ArrayLike,
    *,
    bins: int = 10,
    binning: Binning = "mass",
) -> list[ReliabilityBin]:
    """The predictions cut into ``bins`` bins, each with its mean prediction and observed rate.

    Empty bins are left out (equal-width bins nobody predicts in; equal-mass bins
    when there are fewer predictions than bins).

    Args:
        predicted: ``(N,)`` probabilities in [0, 1].
        outcomes: ``(N,)`` 0/1 (or bool) outcomes.
        bins: how many bins, >= 1.
        binning: ``"mass"`` (equal numbers of predictions) or ``"width"`` (equal ranges).

    Raises:
        ValueError: shapes differ, a probability lies outside [0, 1], or ``bins < 1``.

    Examples:
        >>> [(b.count, b.predicted, b.observed) for b in reliability_bins(
        ...     [0.1, 0.1, 0.9, 0.9], [0, 0, 1, 0], bins=2)]
        [(2, 0.1, 0.0), (2, 0.9, 0.5)]
    """
    p, y = _checked(predicted, outcomes, bins)
    if binning == "mass":
        order = np.argsort(p, kind="stable")
        groups = [part for part in np.array_split(order, bins) if part.size]
    elif binning == "width":
        which = np.minimum((p * bins).astype(np.int64), bins - 1)
        groups = [np.flatnonzero(which == b) for b in range(bins)]
        groups = [group for group in groups if group.size]
    else:
        raise ValueError(f"binning must be 'mass' or 'width', got {binning!r}")
    return [
        ReliabilityBin(
            low=float(p[group].min()),
            high=float(p[group].max()),
            count=int(group.size),
            predicted=float(p[group].mean()),
            observed=float(y[group].mean()),
        )
        for group in groups
    ]


def expected_calibration_error(
    predicted: npt.ArrayLike,
    outcomes: npt.ArrayLike,
    *,
    bins: int = 10,
    binning: Binning = "mass",
) -> float:
    """Sum over bins of ``count / N * |mean prediction - observed rate|``.

    Examples:
        >>> expected_calibration_error([0.1, 0.1, 0.9, 0.9], [0, 0, 1, 0], bins=2)
        0.25
    """
    found = reliability_bins(predicted, outcomes, bins=bins, binning=binning)
    total = sum(b.count for b in found)
    return float(sum(b.count * abs(b.predicted - b.observed) for b in found) / total)


def log_loss(predicted: npt.ArrayLike, outcomes: npt.ArrayLike, *, floor: float = 1e-6) -> float:
    """Mean negative log-likelihood of the outcomes, probabilities clipped to ``[floor, 1-floor]``.

    A proper score: unlike ECE it also rewards telling likely from unlikely apart.

    Examples:
        >>> round(log_loss([0.5, 0.5], [0, 1]), 4)
        0.6931
    """
    p, y = _checked(predicted, outcomes, 1)
    p = np.clip(p, floor, 1 - floor)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def _checked(
    predicted: npt.ArrayLike, outcomes: npt.ArrayLike, bins: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    p = np.asarray(predicted, dtype=np.float64).ravel()
    y = np.asarray(outcomes, dtype=np.float64).ravel()
    if p.shape != y.shape or p.size == 0:
        raise ValueError("predictions and outcomes must be non-empty and of one length")
    if not np.all((p >= 0) & (p <= 1)):
        raise ValueError("predictions must lie in [0, 1]")
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    return p, y
