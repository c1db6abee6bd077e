"""Worker metrics: what a batch counts, and no user id or pseudonym in any label."""

from __future__ import annotations

import math

import orjson
from prometheus_client import generate_latest

from model.serving.baseline import BASELINE_VERSION
from streams.metrics.worker import WorkerMetrics
from streams.ops.status import parse
from streams.pipeline.build import build_pipeline
from streams.pipeline.pseudonyms import Pseudonymizer
from streams.pipeline.records import InputRecord
from streams.settings import Settings

KEY = b"p" * 32
SETTINGS = Settings(pseudonym_key="p" * 32, text_search=False)
USER = "alice-secret-id"


def _record(value: bytes, offset: int, key: bytes = b"k") -> InputRecord:
    return InputRecord(key, value, "shop.events", 0, offset, 10.0)


def _event(user: str, kind: str, item: str, offset: int) -> InputRecord:
    event = {"event_id": f"e{offset}", "user_id": user, "ts": 1.0 + offset, "type": kind}
    return _record(orjson.dumps({**event, "item_id": item}), offset, user.encode())


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
        result.changes.apply(states, keys)
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
    assert scrape.value("intentstream_online_checked_events_total", role="worker") == 1.0
    assert scrape.value("intentstream_online_hr10_ratio", role="worker") == 1.0
    assert scrape.labelled("intentstream_model_info", "version") == {BASELINE_VERSION: 1.0}
    # The baseline learns only from DP releases: private, with no per-session epsilon.
    assert scrape.labelled("intentstream_model_private", "version") == {BASELINE_VERSION: 1.0}
    assert math.isnan(scrape.value("intentstream_model_epsilon", version=BASELINE_VERSION))
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


def test_the_serving_versions_epsilon_is_exported_and_one_not_dp_trained_is_flagged() -> None:
    metrics = WorkerMetrics()
    metrics.serving("v-dp", epsilon=0.9)
    scrape = parse("test", generate_latest(metrics.registry).decode())
    assert scrape.labelled("intentstream_model_epsilon", "version") == {"v-dp": 0.9}
    assert scrape.labelled("intentstream_model_private", "version") == {"v-dp": 1.0}
    metrics.serving("v-plain", epsilon=math.inf)
    scrape = parse("test", generate_latest(metrics.registry).decode())
    assert scrape.labelled("intentstream_model_epsilon", "version") == {"v-plain": math.inf}
    assert scrape.labelled("intentstream_model_private", "version") == {"v-plain": 0.0}
