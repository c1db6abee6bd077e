"""Prometheus metrics of a worker or learner process, served over HTTP on its own port.

Names follow Prometheus style: the ``intentstream_`` prefix, base units
(seconds, ratios), ``_total`` for counters. Labels never hold user ids or
pseudonyms, only small fixed sets (event type, reject reason, model version).
Each process has its own registry, so tests can build several apps in one
process. The per-batch update is a handful of counter increments: the hot path
stays batched (``bench/e2e_throughput.py``).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from online_learning.prequential import LogLossSnapshot, RankingSnapshot
from streams.pipeline import BatchResult, EventPipeline
from streams.privacy import MICRO

if TYPE_CHECKING:
    from streams.learn import Learner

log = logging.getLogger(__name__)

#: Buckets of the model swap time (announcement to serving), seconds.
SWAP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: Buckets of batch sizes, events.
BATCH_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2000, 5000)
#: Buckets of event-to-recommendation latency and of per-batch times, seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Cumulative:
    """A counter fed with a running total kept elsewhere (it adds the difference)."""

    def __init__(self, counter: Counter) -> None:
        self._counter = counter
        self._seen = 0.0

    def update(self, total: float) -> None:
        """Bring the counter up to ``total`` (totals never go down)."""
        if total > self._seen:
            self._counter.inc(total - self._seen)
            self._seen = total


class OnlineQuality:
    """Gauges of prequential quality; shared by the worker and the learner (``role`` label)."""

    def __init__(self, registry: CollectorRegistry, *, role: str) -> None:
        self._role = role
        labels = ["role"]
        self.hr = Gauge(
            "intentstream_online_hr10_ratio",
            "Online HR@10 over the last 1,000 checked events (the item was in the last top 10).",
            labels,
            registry=registry,
        )
        self.ndcg = Gauge(
            "intentstream_online_ndcg10_ratio",
            "Online NDCG@10 over the last 1,000 checked events.",
            labels,
            registry=registry,
        )
        self.checks = Gauge(
            "intentstream_online_checked_events",
            "Events checked against the last list so far (prequential).",
            labels,
            registry=registry,
        )
        self.drifts = Counter(
            "intentstream_drift_detections",
            "ADWIN drift detections in the online miss rate.",
            labels,
            registry=registry,
        )

    def set(self, ranking: RankingSnapshot) -> None:
        """Publish a prequential snapshot."""
        self.hr.labels(self._role).set(ranking.window_hr)
        self.ndcg.labels(self._role).set(ranking.window_ndcg)
        self.checks.labels(self._role).set(ranking.n)

    def drifted(self, count: int = 1) -> None:
        """Count drift detections."""
        if count:
            self.drifts.labels(self._role).inc(count)


class WorkerMetrics:
    """Everything a scoring worker exports."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "intentstream_events", "Accepted events, by type.", ["type"], registry=r
        )
        self.rejected = Counter(
            "intentstream_rejected",
            "Inputs sent to the dead-letter topic, by reason.",
            ["reason"],
            registry=r,
        )
        self.recommendations = Counter(
            "intentstream_recommendations", "Recommendations produced.", registry=r
        )
        self.erasures = Counter("intentstream_erasures", "Erasure requests applied.", registry=r)
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
            "intentstream_redelivered_events",
            "Events delivered again after a restart: answered, not counted twice.",
            registry=r,
        )
        self.unreadable = Counter(
            "intentstream_unreadable_states",
            "User states that failed to open (tampered, or another master key) and restarted.",
            registry=r,
        )
        self.epsilon_charged = Cumulative(
            Counter(
                "intentstream_privacy_epsilon_charged",
                "Epsilon charged to users' budgets for the shared counts, summed over users.",
                registry=r,
            )
        )
        self.budget_refusals = Cumulative(
            Counter(
                "intentstream_privacy_budget_refusals",
                "Contributions refused because the user's budget for the window was spent.",
                registry=r,
            )
        )
        self.windows_released = Cumulative(
            Counter(
                "intentstream_privacy_windows_released",
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
        self.model_created = Gauge(
            "intentstream_model_created_timestamp_seconds",
            "Publication time of the serving model version (0: not from the store).",
            registry=r,
        )
        self.swaps = Counter(
            "intentstream_model_swaps",
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
        self._version = ""
        self._lag_series: set[tuple[str, int]] = set()

    def record_batch(
        self,
        result: BatchResult,
        pipeline: EventPipeline,
        *,
        records: int,
        seconds: float,
    ) -> None:
        """Count one fetched batch (``seconds`` to score) and refresh the gauges."""
        self.batch_seconds.observe(seconds)
        self.scoring_seconds.observe(result.scoring_seconds)
        for latency in result.latencies:
            self.latency.observe(latency)
        self.redelivered.inc(result.redelivered)
        self.unreadable.inc(result.unreadable_states)
        shared = pipeline.shared
        self.epsilon_charged.update(shared.charged_units / MICRO)
        self.budget_refusals.update(shared.refused)
        self.windows_released.update(shared.released_windows)
        for kind, count in result.events_by_type.items():
            self.events.labels(kind).inc(count)
        for letter in result.dead_letters:
            reason = dict(letter.headers).get("reason", b"unknown").decode()
            self.rejected.labels(reason).inc()
        self.recommendations.inc(len(result.recommendations))
        self.erasures.inc(result.erased)
        self.batch_size.observe(records)
        self.quality.set(pipeline.prequential.snapshot())
        self.quality.drifted(result.drifts)
        for name, loss in pipeline.intent_loss.items():
            self._set_log_loss(name, loss.snapshot())
        self.serving(pipeline.ranker.primary.version)

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

    def serving(self, version: str, *, created_at: float | None = None) -> None:
        """Name the serving version (one ``intentstream_model_info`` series at a time)."""
        if created_at is not None:
            self.model_created.set(created_at)
        if version == self._version:
            return
        if self._version:
            self.model.remove(self._version)
        self.model.labels(version).set(1)
        self._version = version

    def swapped(self, outcome: str, *, announced_at: float | None = None) -> None:
        """Count a swap attempt; with ``announced_at``, time it from the announcement."""
        self.swaps.labels(outcome).inc()
        if announced_at is not None:
            self.swap_seconds.observe(max(0.0, time.time() - announced_at))


class LearnerMetrics:
    """Everything the learner exports: what it learned, published, and how well it predicts."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.examples = Cumulative(
            Counter("intentstream_learn_examples", "Training sequences learned from.", registry=r)
        )
        self.updates = Cumulative(
            Counter(
                "intentstream_learn_updates", "Incremental updates (micro-batches).", registry=r
            )
        )
        self.published = Cumulative(
            Counter("intentstream_learn_published", "Model versions published.", registry=r)
        )
        self.busy = Counter(
            "intentstream_learn_busy_seconds",
            "Seconds spent checking, learning and publishing (examples / busy seconds = update "
            "throughput).",
            registry=r,
        )
        self.epsilon = Gauge(
            "intentstream_learn_dp_epsilon",
            "DP-SGD epsilon spent by the learner's updates (0 when DP-SGD is off).",
            registry=r,
        )
        self.quality = OnlineQuality(r, role="learner")
        self._drifts = 0

    def record(self, learner: Learner, *, busy_seconds: float) -> None:
        """Bring the metrics up to the learner's counters, after ``busy_seconds`` of work."""
        self.busy.inc(busy_seconds)
        self.examples.update(learner.trainer.examples)
        self.updates.update(learner.trainer.updates)
        self.published.update(len(learner.published))
        self.quality.drifted(learner.drifts - self._drifts)
        self._drifts = learner.drifts
        self.quality.set(learner.prequential.snapshot())
        spent = learner.trainer.privacy_spent()
        self.epsilon.set(spent["epsilon"] if spent else 0.0)


def serve(registry: CollectorRegistry, port: int) -> int:
    """Serve ``registry`` on ``port`` (0: any free port); returns the port it listens on."""
    server, _ = start_http_server(port, registry=registry)
    bound = int(server.server_port)
    log.warning("metrics on http://127.0.0.1:%d/metrics", bound)
    return bound
