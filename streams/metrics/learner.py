"""Prometheus metrics of the learner, fed with its :class:`LearnerStats` after each poll."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from streams.metrics.common import Cumulative, OnlineQuality, process_registry
from streams.metrics.stats import LearnerStats


class LearnerMetrics:
    """Everything the learner exports: what it learned, published, and how well it predicts.

    Without ``registry``, a :func:`process_registry` (the process's CPU, memory and
    garbage-collector metrics beside the learner's); an injected one gets the
    learner's metrics only.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or process_registry()
        r = self.registry
        self.examples = Cumulative(
            Counter(
                "intentstream_learn_examples_total", "Training sequences learned from.", registry=r
            )
        )
        self.updates = Cumulative(
            Counter(
                "intentstream_learn_updates_total",
                "Incremental updates (micro-batches).",
                registry=r,
            )
        )
        self.published = Cumulative(
            Counter("intentstream_learn_published_total", "Model versions published.", registry=r)
        )
        self.busy = Counter(
            "intentstream_learn_busy_seconds_total",
            "Seconds spent checking, learning and publishing (examples / busy seconds = update "
            "throughput).",
            registry=r,
        )
        # A gauge though it only grows: the spend of the model's lineage, restored from
        # the store when the learner restarts (a counter would start again at 0), and
        # read against the cap INTENTSTREAM_LEARN_DP_EPSILON rather than as a rate.
        self.epsilon = Gauge(
            "intentstream_learn_dp_epsilon",
            "DP-SGD epsilon spent by the learner's updates (0 when DP-SGD is off).",
            registry=r,
        )
        self.stopped = Gauge(
            "intentstream_learn_dp_stopped",
            "1 once the DP lifetime cap stopped the learner's updates (it still checks), else 0.",
            registry=r,
        )
        self.quality = OnlineQuality(r, role="learner")
        self._drifts = 0

    def record(self, stats: LearnerStats, *, busy_seconds: float) -> None:
        """Bring the metrics up to the learner's totals, after ``busy_seconds`` of work."""
        self.busy.inc(busy_seconds)
        self.examples.update(stats.examples)
        self.updates.update(stats.updates)
        self.published.update(stats.published)
        self.quality.drifted(stats.drifts - self._drifts)
        self._drifts = stats.drifts
        self.quality.set(stats.online)
        self.epsilon.set(stats.epsilon)
        self.stopped.set(0 if stats.learning else 1)
