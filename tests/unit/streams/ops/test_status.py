"""``intentstream status``: rates, latency percentiles and down processes from scraped metrics."""

from __future__ import annotations

import math

from prometheus_client import generate_latest
from rich.console import Console

from model.serving.baseline import BASELINE_VERSION
from streams.metrics.worker import WorkerMetrics
from streams.ops.status import Scrape, parse, quantile, status_view

URL = "http://w:9400/metrics"


def test_the_status_view_shows_rates_latency_and_a_down_process() -> None:
    metrics = WorkerMetrics()
    metrics.serving(BASELINE_VERSION, epsilon=math.nan)
    metrics.quality.hr.labels("worker").set(1.0)
    metrics.events.labels("view").inc(2)
    before = parse(URL, generate_latest(metrics.registry).decode(), at=100.0)
    metrics.events.labels("view").inc(10)  # two seconds later: 10 more view events
    now = parse(URL, generate_latest(metrics.registry).decode(), at=102.0)
    down = Scrape("http://127.0.0.1:1/metrics", error="connection refused")
    console = Console(width=250, record=True)
    console.print(status_view([now, down], [before, down]))
    text = console.export_text()
    worker_rows = [line for line in text.splitlines() if "w:9400" in line]
    assert "worker" in worker_rows[0] and BASELINE_VERSION in worker_rows[0]
    assert " 5 " in worker_rows[0]  # 10 events in 2 s
    assert "100.0%" in worker_rows[1]  # online HR@10
    down_row = next(line for line in text.splitlines() if "127.0.0.1:1" in line)
    assert "down" in down_row and "connection refused" in down_row


def test_latency_percentiles_interpolate_like_prometheus() -> None:
    metrics = WorkerMetrics()
    for latency in [0.002] * 50 + [0.02] * 45 + [0.2] * 5:
        metrics.latency.observe(latency)
    scraped = parse("x", generate_latest(metrics.registry).decode())
    # 50 of 100 are <= 2.5 ms: the median is the bucket's upper bound; p99 is in (0.1, 0.25].
    assert quantile(scraped, None, "intentstream_event_latency_seconds", 0.5) == 0.0025
    p99 = quantile(scraped, None, "intentstream_event_latency_seconds", 0.99)
    assert p99 is not None and 0.1 < p99 <= 0.25


def test_the_status_view_shows_the_served_models_epsilon_and_flags_one_not_dp_trained() -> None:
    scrapes = []
    for host, epsilon in (("dp", 0.9), ("plain", math.inf)):
        metrics = WorkerMetrics()
        metrics.serving(f"version-{host}", epsilon=epsilon)
        scrapes.append(
            parse(f"http://{host}:9400/metrics", generate_latest(metrics.registry).decode())
        )
    console = Console(width=250, record=True)
    console.print(status_view(scrapes))
    text = console.export_text()
    # Each process has a traffic row, then a quality-and-privacy row.
    _, dp = [line for line in text.splitlines() if "//dp:" in line]
    _, plain = [line for line in text.splitlines() if "//plain:" in line]
    assert " 0.9 " in dp and "not DP" not in dp
    assert "not DP" in plain
