"""Metric pieces shared by the worker and the learner, and the HTTP endpoint that serves them.

Names follow Prometheus style: the ``intentstream_`` prefix, base units (seconds,
ratios), ``_total`` for counters. A value that only grows while the process lives is a
counter (dashboards and alerts take its ``rate()``); a gauge is a level that can go
down, or one that outlives the process (the learner's DP spend, restored from its
lineage). Labels never hold user ids or pseudonyms, only small fixed sets (event type,
reject reason, model version). Each process has its own registry, so tests can build
several apps in one process; :func:`process_registry` gives it the process, platform
and garbage-collector metrics the default registry would have. Metrics are pushed: each
process hands its statistics to its metrics object; nothing here reads a pipeline.
"""

from __future__ import annotations

import logging

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)

from online_learning.prequential import RankingSnapshot

log = logging.getLogger(__name__)


def process_registry() -> CollectorRegistry:
    """A registry holding the process's own metrics, as the default registry would.

    ``process_*`` (CPU seconds, resident and virtual memory, open file descriptors,
    start time; read from ``/proc`` at each scrape), ``python_info`` and
    ``python_gc_*`` (collections and collected objects per generation, from
    ``gc.get_stats()``: nothing runs at collection time).

    Examples:
        >>> names = {family.name for family in process_registry().collect()}
        >>> {"process_cpu_seconds", "python_gc_collections", "python_info"} <= names
        True
    """
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


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
        self.checks = Counter(
            "intentstream_online_checked_events_total",
            "Events checked against the last list (prequential).",
            labels,
            registry=registry,
        )
        self.drifts = Counter(
            "intentstream_drift_detections_total",
            "ADWIN drift detections in the online miss rate.",
            labels,
            registry=registry,
        )
        # Bound now, so both counters show 0 from the start (and the dashboard's
        # $job and $instance variables find every process by its checked events).
        self._checked = Cumulative(self.checks.labels(role))
        self.drifts.labels(role)

    def set(self, ranking: RankingSnapshot) -> None:
        """Publish a prequential snapshot."""
        self.hr.labels(self._role).set(ranking.window_hr)
        self.ndcg.labels(self._role).set(ranking.window_ndcg)
        self._checked.update(ranking.n)

    def drifted(self, count: int = 1) -> None:
        """Count drift detections."""
        if count:
            self.drifts.labels(self._role).inc(count)


def serve(registry: CollectorRegistry, port: int, *, host: str) -> int:
    """Serve ``registry`` on ``host:port`` (port 0: any free one); returns the port it got.

    ``host`` is ``Settings.metrics_host``: loopback unless the operator opens it,
    since the endpoint asks no one for credentials.
    """
    server, _ = start_http_server(port, addr=host, registry=registry)
    bound = int(server.server_port)
    log.warning("metrics on http://%s:%d/metrics", host, bound)
    return bound
