"""Prequential ("test, then train") evaluation while serving.

For each event, *before* anything learns from it, the stream looks up the list
it last emitted for that user and scores it against the item that actually
came: :class:`PrequentialRanking` keeps HR@K and NDCG@K. :class:`PrequentialLogLoss`
does the same for the intent probability. Both keep the mean over every event
scored and over the last ``window`` events (for "over time" plots), and both
hand back the per-event values so they can feed a :class:`~online_learning.drift.DriftMonitor`.

This module only scores: the per-user "last emitted list" lives in the stream's
state, not here. Values are fractions in [0, 1] (``model.evaluation.metrics`` reports
percentages); before anything is scored they are 0 with ``n == 0``.

Examples:
    >>> ranking = PrequentialRanking(k=10)
    >>> ranking.update_many([["a", "b", "c"], ["a", "b"], None], ["b", "z", "a"])
    [Score(hit=1.0, ndcg=0.6309297535714575), Score(hit=0.0, ndcg=0.0), None]
    >>> {name: round(value, 4) for name, value in ranking.get().items()}
    {'HR@10': 0.5, 'NDCG@10': 0.3155, 'HR@10_window': 0.5, 'NDCG@10_window': 0.3155}
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from river import base


class Score(NamedTuple):
    """One event's ranking score: ``hit`` is 1.0 or 0.0, ``ndcg`` is 1/log2(rank + 1) or 0."""

    hit: float
    ndcg: float


@dataclass(frozen=True, slots=True)
class RankingSnapshot:
    """:class:`PrequentialRanking` at one moment, for a time series.

    Attributes:
        n: events scored so far (the x axis of an "over time" plot).
        n_skipped: events that could not be scored (no list emitted yet, or no item).
        hr: HR@K over all scored events.
        ndcg: NDCG@K over all scored events.
        window_hr: HR@K over the last ``window`` scored events.
        window_ndcg: NDCG@K over the last ``window`` scored events.
    """

    n: int
    n_skipped: int
    hr: float
    ndcg: float
    window_hr: float
    window_ndcg: float


@dataclass(frozen=True, slots=True)
class LogLossSnapshot:
    """:class:`PrequentialLogLoss` at one moment, for a time series.

    Attributes:
        n: cases scored so far.
        log_loss: mean log-loss (nats) over all cases.
        window_log_loss: mean log-loss over the last ``window`` cases.
    """

    n: int
    log_loss: float
    window_log_loss: float


class _Mean:
    """Mean over everything and over the last ``window`` values.

    The window keeps its values and sums them on read (``math.fsum``, exact):
    reads are rare (a scrape or a snapshot), and a running ``sum += new - old``
    would drift over millions of events.
    """

    def __init__(self, window: int) -> None:
        self.n = 0
        self.total = 0.0
        self.recent: deque[float] = deque(maxlen=window)

    def update(self, value: float) -> None:
        self.n += 1
        self.total += value
        self.recent.append(value)

    def get(self) -> float:
        return self.total / self.n if self.n else 0.0

    def window(self) -> float:
        return math.fsum(self.recent) / len(self.recent) if self.recent else 0.0


def _check_window(window: int) -> None:
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")


class PrequentialRanking(base.Base):
    """Online HR@K and NDCG@K of the lists emitted before each event.

    An event is scored when the user had a list emitted and the event names an
    item; otherwise it is skipped (counted in ``n_skipped``), because a user
    who was never served a list tells nothing about the ranking. An empty list
    that *was* emitted is scored, as a miss. With one relevant item the ideal
    DCG is 1, so NDCG@K is ``1 / log2(rank + 1)`` for a hit at 1-based ``rank``
    (the first occurrence, if the list repeats an item).

    Args:
        k: cut-off; only the first ``k`` emitted items count.
        window: events in the sliding window.

    Raises:
        ValueError: If ``k`` or ``window`` is below 1.

    Examples:
        >>> ranking = PrequentialRanking(k=2, window=1)
        >>> ranking.update_one(["x", "y", "z"], "z")  # rank 3 is beyond k=2
        Score(hit=0.0, ndcg=0.0)
        >>> ranking.update_one(["x", "y"], "x")
        Score(hit=1.0, ndcg=1.0)
        >>> ranking.snapshot()
        RankingSnapshot(n=2, n_skipped=0, hr=0.5, ndcg=0.5, window_hr=1.0, window_ndcg=1.0)
    """

    def __init__(self, k: int = 10, *, window: int = 1000) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        _check_window(window)
        self.k = k
        self.window = window
        self._hit = _Mean(window)
        self._ndcg = _Mean(window)
        self.n_skipped = 0

    @property
    def n(self) -> int:
        """Events scored so far."""
        return self._hit.n

    def update_one(self, emitted: Sequence[Hashable] | None, item: Hashable | None) -> Score | None:
        """Score one event against the list last emitted for its user.

        Args:
            emitted: the user's last emitted list, best first; ``None`` if none yet.
            item: the item the event names; ``None`` if it names none.

        Returns:
            The event's score, or ``None`` when it was skipped.
        """
        if emitted is None or item is None:
            self.n_skipped += 1
            return None
        top = list(emitted[: self.k])
        score = Score(1.0, 1.0 / math.log2(top.index(item) + 2)) if item in top else Score(0.0, 0.0)
        self._hit.update(score.hit)
        self._ndcg.update(score.ndcg)
        return score

    def update_many(
        self, emitted: Sequence[Sequence[Hashable] | None], items: Sequence[Hashable | None]
    ) -> list[Score | None]:
        """Score a batch in order: the same as :meth:`update_one` on each pair.

        Args:
            emitted: ``B`` lists (or ``None``), as in :meth:`update_one`.
            items: ``B`` items (or ``None``).

        Returns:
            ``B`` scores, ``None`` where skipped.

        Raises:
            ValueError: If the lengths differ.
        """
        if len(emitted) != len(items):
            raise ValueError(f"{len(emitted)} lists but {len(items)} items")
        return [self.update_one(top, item) for top, item in zip(emitted, items, strict=True)]

    def get(self) -> dict[str, float]:
        """Current values, named like ``model.evaluation.metrics`` (but as fractions).

        Returns:
            ``HR@K``, ``NDCG@K`` and their ``_window`` variants.
        """
        k = self.k
        return {
            f"HR@{k}": self._hit.get(),
            f"NDCG@{k}": self._ndcg.get(),
            f"HR@{k}_window": self._hit.window(),
            f"NDCG@{k}_window": self._ndcg.window(),
        }

    def snapshot(self) -> RankingSnapshot:
        """The current values with the event counts, for a time series."""
        return RankingSnapshot(
            n=self.n,
            n_skipped=self.n_skipped,
            hr=self._hit.get(),
            ndcg=self._ndcg.get(),
            window_hr=self._hit.window(),
            window_ndcg=self._ndcg.window(),
        )


class PrequentialLogLoss(base.Base):
    """Online log-loss of the intent probability, scored before learning.

    Probabilities are clipped to ``[eps, 1 - eps]`` so that one confident
    mistake costs at most ``-log(eps)`` instead of infinity.

    Args:
        eps: clipping bound, in (0, 0.5).
        window: cases in the sliding window.

    Raises:
        ValueError: If ``eps`` or ``window`` is out of range.

    Examples:
        >>> loss = PrequentialLogLoss(eps=1e-3)
        >>> round(loss.update_one(0.8, True), 4), round(loss.update_one(0.0, False), 4)
        (0.2231, 0.001)
        >>> round(loss.update_one(0.0, True), 4)  # clipped: -log(1e-3)
        6.9078
    """

    def __init__(self, *, eps: float = 1e-7, window: int = 1000) -> None:
        if not 0 < eps < 0.5:
            raise ValueError(f"eps must be in (0, 0.5), got {eps}")
        _check_window(window)
        self.eps = eps
        self.window = window
        self._loss = _Mean(window)

    @property
    def n(self) -> int:
        """Cases scored so far."""
        return self._loss.n

    def update_one(self, p: float, label: bool) -> float:
        """Score one case.

        Args:
            p: predicted P(purchase), in [0, 1].
            label: whether it was a purchase.

        Returns:
            This case's log-loss in nats, at most ``-log(eps)``.

        Raises:
            ValueError: If ``p`` is not in [0, 1] (NaN included).
        """
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
        p = min(max(p, self.eps), 1.0 - self.eps)
        loss = -math.log(p if label else 1.0 - p)
        self._loss.update(loss)
        return loss

    def update_many(self, p: Sequence[float], labels: Sequence[bool]) -> list[float]:
        """Score a batch in order: the same as :meth:`update_one` on each case.

        Args:
            p: ``B`` probabilities.
            labels: ``B`` labels.

        Returns:
            ``B`` per-case log-losses.

        Raises:
            ValueError: If the lengths differ or a probability is out of range.
        """
        if len(p) != len(labels):
            raise ValueError(f"{len(p)} probabilities but {len(labels)} labels")
        return [self.update_one(pi, label) for pi, label in zip(p, labels, strict=True)]

    def get(self) -> dict[str, float]:
        """Current values: ``log_loss`` and ``log_loss_window``."""
        return {"log_loss": self._loss.get(), "log_loss_window": self._loss.window()}

    def snapshot(self) -> LogLossSnapshot:
        """The current values with the case count, for a time series."""
        return LogLossSnapshot(
            n=self.n, log_loss=self._loss.get(), window_log_loss=self._loss.window()
        )
