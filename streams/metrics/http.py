"""Prometheus metrics of the worker's HTTP API, registered in the worker's registry.

Labels are the route template (``/v1/users/{user_id}/recommendations``), never the
path, so no user id reaches a label; ``served`` says whether this worker answered
or forwarded the request to the owner of the user's partition.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: Buckets of HTTP request durations, seconds.
REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class HttpMetrics:
    """The HTTP API's request counts and durations, and the latest lists it holds."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "intentstream_http_requests",
            "HTTP API requests, by route template, method, status and where they were served "
            "(local, forwarded to the owner, or refused before routing: none).",
            ["route", "method", "status", "served"],
            registry=registry,
        )
        self.seconds = Histogram(
            "intentstream_http_request_seconds",
            "Time to answer an HTTP API request, forwarding included, by route template.",
            ["route"],
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self.latest_lists = Gauge(
            "intentstream_http_latest_lists",
            "Users whose latest recommendation list this worker holds for the HTTP API.",
            registry=registry,
        )

    def record(self, *, route: str, method: str, status: int, served: str, seconds: float) -> None:
        """Count one answered request."""
        self.requests.labels(route, method, str(status), served).inc()
        self.seconds.labels(route).observe(seconds)
