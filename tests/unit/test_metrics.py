"""Worker metrics: what a batch counts, how the status view reads it back, no ids in labels."""

from __future__ import annotations

import orjson
from prometheus_client import generate_latest
from rich.console import Console

from model.serving.baseline import BASELINE_VERSION
from streams.metrics.worker import WorkerMetrics
from streams.ops.status import Scrape, parse, quantile, status_view
from streams.pipeline.build import build_pipeline
from streams.pipeline.pseudonyms import Pseudonymizer
from streams.pipeline.records import InputRecord
from streams.settings import Settings

KEY = b"p" * 32
SETTINGS = Settings(pseudonym_key="p" * 32, text_search=False)
USER = "alice-secret-id"


def _record(value: bytes, offset: int) -> InputRecord:
    return InputRecord(b"k", value, "shop.events", 0, offset, 1.0)


def _event(user: str, kind: str, item: str, offset: int) -> InputRecord:
    event = {"event_id": f"e{offset}", "user_id": user, "ts": 1.0 + offset, "type": kind}
    return _record(orjson.dumps({**event, "item_id": item}), offset)


def _exported_after_two_batches() -> str:
    pipeline = build_pipeline(SETTINGS, pseudonymizer=Pseudonymizer(KEY), master_key=bytes(32))
    metrics = WorkerMetrics()
    batches = [
        [_event(USER, "view", "a", 0)],
        [_event(USER, "view", "a", 1), _event("bob-secret-id", "add_to_cart", "b", 2)],
        [_record(b"{not json", 3)],
    ]
    states: dict[bytes, bytes] = {}
    keys: dict[bytes, bytes] = {}
    for records in batches:
        result = pipeline.process(records, read_state=states.get, read_key=keys.get)
        for table, changes in ((states, result.changes.states), (keys, result.changes.keys)):
            table.update({user: value for user, (_, value) in changes.items() if value})
        metrics.record_batch(result.stats, seconds=0.02)
        metrics.set_lag({("shop.events", 0): 7, ("shop.events", 1): 3})
    metrics.set_lag({("shop.events", 0): 7})  # partition 1 was given away
    return generate_latest(metrics.registry).decode()


def test_a_batch_is_counted_by_type_reason_and_output() -> None:
    scrape = parse("test", _exported_after_two_batches())
    assert scrape.labelled("intentstream_events_total", "type") == {
        "view": 2.0,
        "add_to_cart": 1.0,
    }
    assert scrape.labelled("intentstream_rejected_total", "reason") == {"invalid_json": 1.0}
    assert scrape.value("intentstream_recommendations_total") == 3.0
    assert scrape.value("intentstream_batch_size_events_count") == 3.0
    # The repeat view was checked against the list emitted after the first one: a hit.
    assert scrape.value("intentstream_online_checked_events", role="worker") == 1.0
    assert scrape.value("intentstream_online_hr10_ratio", role="worker") == 1.0
    assert scrape.labelled("intentstream_model_info", "version") == {BASELINE_VERSION: 1.0}
    assert scrape.value("intentstream_event_latency_seconds_count") == 3.0
    assert scrape.value("intentstream_batch_seconds_sum") == 0.06
    assert scrape.labelled("intentstream_consumer_lag_events", "partition") == {"0": 7.0}
    # Both users were charged for the shared counts of their first window (epsilon 1 each).
    assert scrape.value("intentstream_privacy_epsilon_charged_total") == 2.0
    assert scrape.value("intentstream_privacy_budget_refusals_total") == 0.0


def test_no_user_id_or_pseudonym_reaches_a_metric() -> None:
    text = _exported_after_two_batches()
    assert "secret-id" not in text
    assert Pseudonymizer(KEY).one(USER) not in text


def test_the_status_view_shows_rates_latency_and_a_down_process() -> None:
    exported = _exported_after_two_batches()
    before = parse("http://w:9400/metrics", exported, at=100.0)
    # Two seconds later the same process had counted 10 more view events.
    later = exported.replace(
        'intentstream_events_total{type="view"} 2.0', 'intentstream_events_total{type="view"} 12.0'
    )
    now = parse("http://w:9400/metrics", later, at=102.0)
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
