"""Which items follow which, released once from the training sessions with differential privacy.

The session-kNN part of a non-private served ranker stores the training sessions
themselves, so a private model cannot have it. It gets the items that sessions
hold near each other instead: every ordered pair (a, b) of distinct items at most
:data:`WINDOW` positions apart in a session, both ways. The counts of those pairs
are released once with OpenDP's Gaussian threshold mechanism (Rogers 2023):

- each session contributes to at most :data:`MAX_PAIRS` distinct pairs (its most
  recent ones) and adds ``1 / sqrt(n)`` to each of its ``n`` pairs, so its whole
  contribution has L2 norm 1 and no pair gets more than 1 from it;
- every count gets Gaussian noise, and a pair whose noisy count is below the
  threshold is dropped, so a pair held by one session only comes out with a
  probability folded into delta;
- the noise scale is the smallest that OpenDP's own privacy map certifies for the
  target (epsilon, delta), with half of delta for the threshold.

Noise comes from OpenDP's samplers, which draw from the operating system's CSPRNG.
What a private served ranker does with the release (:mod:`model.ranking.transitions`)
is post-processing and costs nothing more.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import opendp.prelude as dp
import scipy.sparse as sp

from model.threshold import check_positive, loss_target

#: Pairs are items at most this many positions apart in a session.
WINDOW = 3
#: Distinct pairs one session contributes to (its most recent ones).
MAX_PAIRS = 50
#: Share of delta given to the threshold (pairs of a single session); the rest to the noise.
THRESHOLD_DELTA_SHARE = 0.5


def session_pairs(session: Sequence[int], *, window: int = WINDOW) -> list[tuple[int, int]]:
    """Distinct ordered pairs of items at most ``window`` apart, most recent first.

    Examples:
        >>> session_pairs([1, 2, 3, 2], window=1)
        [(2, 3), (3, 2), (2, 1), (1, 2)]
    """
    seen: dict[tuple[int, int], None] = {}
    for later in range(len(session) - 1, 0, -1):
        for earlier in range(later - 1, max(0, later - window) - 1, -1):
            a, b = session[earlier], session[later]
            if a != b and a and b:
                seen[(b, a)] = None
                seen[(a, b)] = None
    return list(seen)


def bounded_counts(
    sessions: Sequence[Sequence[int]], *, n_items: int, window: int, max_pairs: int
) -> dict[int, float]:
    """Each pair's summed contributions, keyed ``a * n_items + b``; each session's L2 norm <= 1."""
    counts: dict[int, float] = {}
    for session in sessions:
        pairs = session_pairs(session, window=window)[:max_pairs]
        if not pairs:
            continue
        # Rounded down a hair so that float rounding can never push the norm past 1.
        weight = math.nextafter(1.0 / math.sqrt(len(pairs)), 0.0)
        for a, b in pairs:
            key = a * n_items + b
            counts[key] = counts.get(key, 0.0) + weight
    return counts


def pair_matrix(counts: dict[int, float], n_items: int) -> sp.csr_matrix:
    """Counts keyed ``a * n_items + b`` as an ``(n_items, n_items)`` float32 CSR, columns sorted."""
    keys = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
    values = np.fromiter(counts.values(), dtype=np.float32, count=len(counts))
    matrix = sp.csr_matrix((values, (keys // n_items, keys % n_items)), shape=(n_items, n_items))
    matrix.sort_indices()
    return matrix


def private_transitions(
    sessions: Sequence[Sequence[int]],
    *,
    n_items: int,
    epsilon: float,
    delta: float,
    window: int = WINDOW,
    max_pairs: int = MAX_PAIRS,
) -> tuple[sp.csr_matrix, dict[str, Any]]:
    """The released pair counts as an ``(n_items, n_items)`` CSR matrix, and the spend.

    Args:
        sessions: the training sessions as item indices (0 = unknown, skipped).
        n_items: item indices of the model, padding included.
        epsilon, delta: the release's privacy loss per session.
        window, max_pairs: see :data:`WINDOW`, :data:`MAX_PAIRS`.

    Returns:
        Noisy counts (float32, >= the threshold) of the pairs that passed, and the
        spend for the checkpoint's ``privacy``.
    """
    check_positive("epsilon", epsilon)
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")
    measurement, scale, threshold = gaussian_threshold(epsilon, delta, max_pairs)
    counts = bounded_counts(sessions, n_items=n_items, window=window, max_pairs=max_pairs)
    released = measurement(counts) if counts else {}
    # The threshold is on |count|: a far negative one is noise alone.
    matrix = pair_matrix({k: v for k, v in released.items() if v > 0}, n_items)
    spend = {
        "epsilon": epsilon,
        "delta": delta,
        "mechanism": "OpenDP Gaussian threshold",
        "noise_scale": scale,
        "threshold": threshold,
        "window": window,
        "max_pairs_per_session": max_pairs,
        "pairs": int(matrix.nnz),
    }
    return matrix, spend


def gaussian_threshold(
    epsilon: float, delta: float, max_pairs: int
) -> tuple[dp.Measurement, float, float]:
    """OpenDP's Gaussian threshold at the smallest scale certifying (epsilon, delta), and its
    scale and threshold, for contributions of L0 ``max_pairs``, L2 1 and L-inf 1."""
    dp.enable_features("contrib")
    space = (
        dp.map_domain(dp.atom_domain(T="i64"), dp.atom_domain(T="f64", nan=False)),
        dp.l02inf_distance(dp.absolute_distance(T="f64")),
    )
    d_in = (max_pairs, 1.0, 1.0)
    threshold_delta = delta * THRESHOLD_DELTA_SHARE
    target = loss_target(epsilon)

    def threshold_for(scale: float) -> float:
        def fits(threshold: float) -> bool:
            built = dp.m.make_gaussian_threshold(*space, scale=scale, threshold=threshold)
            return float(built.map(d_in)[1]) <= threshold_delta  # type: ignore[no-untyped-call]

        return float(dp.binary_search(fits, bounds=(1.0, 1e6), T=float))

    def build(scale: float) -> dp.Measurement:
        return dp.m.make_gaussian_threshold(*space, scale=scale, threshold=threshold_for(scale))

    def certified(scale: float) -> bool:
        approx = dp.c.make_fix_delta(dp.c.make_zCDP_to_approxDP(build(scale)), delta)
        try:
            return float(approx.map(d_in)[0]) <= target  # type: ignore[no-untyped-call]
        except dp.OpenDPException:  # so little noise that the loss overflows
            return False

    scale = float(dp.binary_search(certified, bounds=(0.01, 1e4), T=float))
    threshold = threshold_for(scale)
    return build(scale), scale, threshold
