"""Every metric the alerts and dashboards read is exported by a live worker and learner.

tests/deploy_checks.py checks the names against the metrics the code
registers; this runs a worker and the learner on Apache Kafka and reads their
endpoints, as Prometheus would. A labelled series exists only once observed, so
the traffic makes each appear: events of every type, a dead letter, an erasure,
a model swap, hits turning into misses, which the drift detector catches, and a
request to the HTTP API.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from aiokafka.structs import ConsumerRecord

from streams.kafka.announce import publish
from streams.ops.status import Scrape, scrape
from streams.settings import Settings
from streams.worker.process import read_ready, worker_process
from tests.deploy_checks import (
    ALERTS,
    DASHBOARDS,
    alert_rules,
    dashboard_exprs,
    load_yaml,
    metric_names,
)
from tests.integration.events import ITEMS
from tests.integration.kafka_io import produce

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

KINDS = ("view", "click", "add_to_cart", "purchase")
#: Events whose item every list holds (the model knows five items), then as many new ones.
HITS = MISSES = 140
#: Seconds to wait for the learner's first record and the worker's last batch. The
#: learner records its metrics after each poll's work, and the drift these events
#: cause makes it publish at once: on a loaded 2-core machine that poll took 31 s.
SCRAPE_SECONDS = 90.0


def _events() -> list[tuple[bytes, bytes]]:
    out = []
    for n in range(HITS + MISSES):
        user = f"u{n % 7}"
        event: dict[str, object] = {"event_id": f"e{n}", "user_id": user, "ts": 1.7e9 + n}
        if n < HITS and n % 10 == 9:
            event |= {"type": "search", "query": "red shoes"}
        else:
            item = ITEMS[n % len(ITEMS)] if n < HITS else f"new-{n}"
            event |= {"type": KINDS[n % len(KINDS)], "item_id": item}
        out.append((user.encode(), orjson.dumps(event)))
    return out


#: Series the processes export themselves, as opposed to ``up``, which Prometheus makes.
OWN_PREFIXES = ("intentstream_", "process_", "python_")


def _used_names() -> set[str]:
    """The series names of the processes that the alert rules and dashboards read."""
    exprs = [rule["expr"] for rule in alert_rules(load_yaml(ALERTS))]
    for path in DASHBOARDS:
        exprs += dashboard_exprs(orjson.loads(path.read_bytes()))
    return {name for expr in exprs for name in metric_names(expr) if name.startswith(OWN_PREFIXES)}


def _missing(scrapes: list[Scrape], wanted: set[str]) -> set[str]:
    """Wanted names without a sample, and the learner's role series until it has recorded."""
    missing = wanted - {name for s in scrapes for name, _ in s.samples}
    if not scrapes[1].value("intentstream_online_checked_events_total", role="learner"):
        missing.add('intentstream_online_checked_events_total{role="learner"}')
    return missing


def _scrape_until_complete(urls: list[str], wanted: set[str]) -> tuple[list[Scrape], set[str]]:
    """Scrape the worker and the learner until nothing is missing (or time is up)."""
    deadline = time.monotonic() + SCRAPE_SECONDS
    while True:
        scrapes = [scrape(url) for url in urls]
        missing = _missing(scrapes, wanted)
        if not missing or time.monotonic() > deadline:
            return scrapes, missing
        time.sleep(1)


def test_a_live_worker_and_learner_export_every_metric_the_alerts_and_dashboards_read(
    learner_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], subprocess.Popen[bytes]],
    tiny_checkpoint: Callable[..., Path],
    read_topic: Callable[..., list[ConsumerRecord[bytes, bytes]]],
    tmp_path: Path,
) -> None:
    # Small batches: a user's list is set when their batch is scored, so the
    # drift detector needs each user's events spread over many batches.
    settings = learner_settings(batch_max=10)
    run = tiny_checkpoint(tmp_path / "run", seed=1, items=ITEMS, meta={"metrics": {"P@20": 1.0}})
    publish(settings, run, parent=None)  # swapped to at start
    start_worker(settings)
    with worker_process(settings, log_file=tmp_path / "learn.log", command="learn"):
        events = _events()
        bad = (b"u0", b"{not json")
        asyncio.run(produce(settings.bootstrap, settings.events_topic, [*events, bad]))
        out = read_topic(settings.bootstrap, settings.recommendations_topic, count=len(events))
        assert len(out) == len(events)
        # After the answers: an erasure also covers the user's events not yet read.
        erase = orjson.dumps({"action": "erase", "request_id": "req-metrics"})
        asyncio.run(produce(settings.bootstrap, settings.privacy_requests_topic, [(b"u6", erase)]))

        ready = read_ready(tmp_path / "worker.ready")
        worker_port = ready["metrics_port"]
        # A request to the HTTP API, so its labelled series exist.
        with urllib.request.urlopen(f"http://127.0.0.1:{ready['http_port']}/healthz") as answer:
            assert answer.status == 200
        urls = [
            f"http://127.0.0.1:{worker_port}/metrics",
            f"http://127.0.0.1:{settings.learn_metrics_port}/metrics",
        ]
        (worker, learner), missing = _scrape_until_complete(urls, _used_names())
        log = (tmp_path / "learn.log").read_text()[-2000:]

    assert worker.error is None and learner.error is None, (worker.error, learner.error, log)
    assert sorted(missing) == []
    # The traffic did what the series above needed.
    assert set(worker.labelled("intentstream_events_total", "type")) == {*KINDS, "search"}
    assert worker.value("intentstream_rejected_total", reason="invalid_json") == 1
    assert worker.value("intentstream_erasures_total") == 1
    assert (worker.value("intentstream_model_swaps_total", outcome="loaded") or 0) >= 1
    assert (worker.value("intentstream_drift_detections_total", role="worker") or 0) >= 1
    assert (learner.value("intentstream_learn_examples_total") or 0) > 0
    assert worker.labelled("intentstream_http_requests_total", "route") == {"/healthz": 1}
    # The process and garbage-collector metrics of both (the dashboard's Processes row).
    for process in (worker, learner):
        assert (process.value("process_resident_memory_bytes") or 0) > 0
        assert (process.value("python_gc_collections_total", generation="0") or 0) > 0
