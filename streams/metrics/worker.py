"""Prometheus metrics of a scoring worker, fed with each batch's :class:`BatchStats`."""

from __future__ import annotations

import math
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from online_learning.prequential import LogLossSnapshot
from streams.metrics.ads import AdsMetrics
from streams.metrics.common import Cumulative, OnlineQuality, process_registry
from streams.metrics.stats import BatchStats

#: Buckets of the model swap time (announcement to serving), seconds.
SWAP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: Buckets of batch sizes, events.
BATCH_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2000, 5000)
#: Buckets of event-to-recommendation latency and of per-batch times, seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Outcomes of a model swap, bound at start: ``increase()`` misses a series' first
#: sample, so a first rejection would not raise IntentstreamModelSwapRejected.
SWAP_OUTCOMES = ("loaded", "rejected", "failed_probation")


class WorkerMetrics:
    """Everything a scoring worker exports.

    Without ``registry``, a :func:`process_registry` (the process's CPU, memory and
    garbage-collector metrics beside intentstream's); an injected one gets
    intentstream's metrics only.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or process_registry()
        r = self.registry
        self.events = Counter(
            "intentstream_events_total", "Accepted events, by type.", ["type"], registry=r
        )
        self.rejected = Counter(
            "intentstream_rejected_total",
            "Inputs sent to the dead-letter topic, by reason.",
            ["reason"],
            registry=r,
        )
        self.recommendations = Counter(
            "intentstream_recommendations_total", "Recommendations produced.", registry=r
        )
        self.erasures = Counter(
            "intentstream_erasures_total", "Erasure requests applied.", registry=r
        )
        self.batch_size = Histogram(
            "intentstream_batch_size_events",
            "Records per fetched batch.",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.latency = Histogram(
            "intentstream_event_latency_seconds",
            "From an event's broker timestamp to its recommendation being produced.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "intentstream_batch_seconds",
            "Time to score one fetched batch (validate, state, privacy, rank).",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.scoring_seconds = Histogram(
            "intentstream_scoring_seconds",
            "Time spent ranking in one fetched batch.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.lag = Gauge(
            "intentstream_consumer_lag_events",
            "Events of an owned input partition not yet processed (high watermark - next offset).",
            ["topic", "partition"],
            registry=r,
        )
        self.redelivered = Counter(
            "intentstream_redelivered_events_total",
            "Events delivered again after a restart: answered, not counted twice.",
            registry=r,
        )
        self.erased_records = Counter(
            "intentstream_erased_records_total",
            "Records stamped at or before their user's erasure: dropped unapplied.",
            registry=r,
        )
        self.unreadable = Counter(
            "intentstream_unreadable_states_total",
            "User states that failed to open (tampered, or another master key) and restarted.",
            registry=r,
        )
        self.epsilon_charged = Cumulative(
            Counter(
                "intentstream_privacy_epsilon_charged_total",
                "Epsilon charged to users' budgets for the shared counts, summed over users.",
                registry=r,
            )
        )
        self.budget_refusals = Cumulative(
            Counter(
                "intentstream_privacy_budget_refusals_total",
                "Contributions refused because the user's budget for the window was spent.",
                registry=r,
            )
        )
        self.dp_releases = Cumulative(
            Counter(
                "intentstream_privacy_windows_released_total",
                "Windows of shared counts released with differential privacy.",
                registry=r,
            )
        )
        self.quality = OnlineQuality(r, role="worker")
        self.intent_log_loss = Gauge(
            "intentstream_intent_log_loss",
            "Prequential log-loss (nats) of purchase intent over the last 1,000 events, by model.",
            ["model"],
            registry=r,
        )
        self.model = Gauge(
            "intentstream_model_info",
            "The model version serving now (value 1).",
            ["version"],
            registry=r,
        )
        self.model_epsilon = Gauge(
            "intentstream_model_epsilon",
            "Per-session epsilon of the serving version (+Inf: not DP-trained; NaN: the baseline).",
            ["version"],
            registry=r,
        )
        self.model_private = Gauge(
            "intentstream_model_private",
            "1 when the serving version is DP-trained or the baseline (fed DP releases), else 0.",
            ["version"],
            registry=r,
        )
        self.model_created = Gauge(
            "intentstream_model_created_timestamp_seconds",
            "Publication time of the serving model version (0: not from the store).",
            registry=r,
        )
        self.swaps = Counter(
            "intentstream_model_swaps_total",
            "Model version changes, by outcome.",
            ["outcome"],
            registry=r,
        )
        self.swap_seconds = Histogram(
            "intentstream_model_swap_seconds",
            "From a version's announcement to this worker serving it.",
            buckets=SWAP_BUCKETS,
            registry=r,
        )
        for outcome in SWAP_OUTCOMES:
            self.swaps.labels(outcome)
        self.ads = AdsMetrics(r)
        self._version = ""
        self._lag_series: set[tuple[str, int]] = set()

    def record_batch(self, stats: BatchStats, *, seconds: float) -> None:
        """Count one fetched batch (``seconds`` to handle) and refresh the gauges."""
        self.batch_seconds.observe(seconds)
        self.scoring_seconds.observe(stats.scoring_seconds)
        for latency in stats.latencies:
            self.latency.observe(latency)
        self.redelivered.inc(stats.redelivered)
        self.erased_records.inc(stats.erased_records)
        self.unreadable.inc(stats.unreadable_states)
        self.epsilon_charged.update(stats.epsilon_charged)
        self.budget_refusals.update(stats.budget_refusals)
        self.dp_releases.update(stats.dp_releases)
        for kind, count in stats.events_by_type.items():
            self.events.labels(kind).inc(count)
        for reason, count in stats.rejected_by_reason.items():
            self.rejected.labels(reason).inc(count)
        self.recommendations.inc(stats.recommendations)
        self.erasures.inc(stats.erased)
        self.batch_size.observe(stats.records)
        if stats.online is not None:
            self.quality.set(stats.online)
        self.quality.drifted(stats.drifts)
        for name, loss in stats.intent_log_loss.items():
            self._set_log_loss(name, loss)
        self.serving(stats.serving_version, epsilon=stats.serving_epsilon)
        self.ads.record(stats)

    def set_lag(self, lag: dict[tuple[str, int], int]) -> None:
        """Events left per owned input partition; partitions no longer owned are dropped."""
        for topic, partition in self._lag_series - lag.keys():
            self.lag.remove(topic, str(partition))
        for (topic, partition), left in lag.items():
            self.lag.labels(topic, str(partition)).set(left)
        self._lag_series = set(lag)

    def _set_log_loss(self, model: str, loss: LogLossSnapshot) -> None:
        if loss.n:
            self.intent_log_loss.labels(model).set(loss.window_log_loss)

    def serving(self, version: str, *, epsilon: float, created_at: float | None = None) -> None:
        """Name the serving version and its per-session ``epsilon`` (one series of each at a time).

        ``epsilon`` is ``ItemScorer.epsilon``: ``inf`` marks a version that is not DP-trained.
        """
        if created_at is not None:
            self.model_created.set(created_at)
        if version == self._version:
            return
        if self._version:
            for gauge in (self.model, self.model_epsilon, self.model_private):
                gauge.remove(self._version)
        self.model.labels(version).set(1)
        self.model_epsilon.labels(version).set(epsilon)
        self.model_private.labels(version).set(0 if math.isinf(epsilon) else 1)
        self._version = version

    def swapped(self, outcome: str, *, announced_at: float | None = None) -> None:
        """Count a swap attempt; with ``announced_at``, time it from the announcement."""
        self.swaps.labels(outcome).inc()
        if announced_at is not None:
            self.swap_seconds.observe(max(0.0, time.time() - announced_at))
