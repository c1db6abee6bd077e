"""Each process's registry: counts are counters, beside the process's own metrics."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from online_learning.prequential import RankingSnapshot
from streams.metrics.learner import LearnerMetrics
from streams.metrics.worker import WorkerMetrics
from streams.ops.status import parse

#: What the dashboard's Processes row reads from each worker and the learner.
PROCESS_SERIES = (
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_open_fds",
    "process_start_time_seconds",
    "python_gc_collections_total",
    "python_gc_objects_collected_total",
    "python_info",
)


def _registries() -> dict[str, CollectorRegistry]:
    return {"worker": WorkerMetrics().registry, "learner": LearnerMetrics().registry}


@pytest.mark.parametrize("role", ["worker", "learner"])
def test_each_process_exports_its_cpu_memory_and_garbage_collector(role: str) -> None:
    scrape = parse(role, generate_latest(_registries()[role]).decode())
    names = {name for name, _ in scrape.samples}
    assert set(PROCESS_SERIES) <= names
    assert (scrape.value("process_resident_memory_bytes") or 0) > 0
    assert set(scrape.labelled("python_gc_collections_total", "generation")) == {"0", "1", "2"}


def test_an_injected_registry_gets_intentstream_metrics_only() -> None:
    metrics = WorkerMetrics(CollectorRegistry())
    names = {family.name for family in metrics.registry.collect()}
    assert names and all(name.startswith("intentstream_") for name in names)


#: Gauges whose name says "events": levels that go down (events left to read).
EVENT_LEVELS = frozenset({"intentstream_consumer_lag_events"})


@pytest.mark.parametrize("role", ["worker", "learner"])
def test_counts_are_counters(role: str) -> None:
    """A gauge may not look like a count: ``_total``, or events with no level meaning."""
    families = [f for f in _registries()[role].collect() if f.name.startswith("intentstream_")]
    gauges = {f.name for f in families if f.type == "gauge"}
    assert {name for name in gauges if name.endswith(("_total", "_events"))} <= EVENT_LEVELS
    counters = [f for f in families if f.type == "counter"]
    assert counters
    for family in counters:
        assert (
            f"# TYPE {family.name}_total counter" in generate_latest(_registries()[role]).decode()
        )


def test_online_checked_events_is_a_counter_that_follows_the_running_total() -> None:
    """Regression: it was a gauge, so rate() over it (events checked per second) was wrong."""
    metrics = LearnerMetrics()
    scrape = parse("learner", generate_latest(metrics.registry).decode())
    # Bound at start: every process shows it (the dashboard's $job and $instance read it).
    assert scrape.value("intentstream_online_checked_events_total", role="learner") == 0
    assert scrape.value("intentstream_drift_detections_total", role="learner") == 0
    for n in (3, 10, 10):
        metrics.quality.set(RankingSnapshot(n, 0, 0.5, 0.5, 0.5, 0.5))
    scrape = parse("learner", generate_latest(metrics.registry).decode())
    assert scrape.value("intentstream_online_checked_events_total", role="learner") == 10
    families = {f.name: f.type for f in metrics.registry.collect()}
    assert families["intentstream_online_checked_events"] == "counter"


def test_a_first_rejected_swap_is_an_increase_from_zero() -> None:
    """Regression: the outcome series appeared with 1, so increase() saw no change."""
    metrics = WorkerMetrics()
    before = parse("w", generate_latest(metrics.registry).decode())
    assert before.labelled("intentstream_model_swaps_total", "outcome") == {
        "loaded": 0,
        "rejected": 0,
        "failed_probation": 0,
    }
    metrics.swapped("rejected")
    after = parse("w", generate_latest(metrics.registry).decode())
    assert after.value("intentstream_model_swaps_total", outcome="rejected") == 1
