"""Hot swap on Apache Kafka: a new version is served without a restart, a corrupt or forged
one is refused.

Events flow while versions are announced on ``shop.models``; every event gets
exactly one recommendation, each names the version that produced it, and a
version whose weights were corrupted in the store is rejected with the previous
one kept. An announcement not signed with the deployment's key is never served,
and only the operator's rollback rejects a version for every worker.
"""

from __future__ import annotations

import asyncio
import math
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from aiokafka.structs import ConsumerRecord

from model.serving.baseline import BASELINE_VERSION
from online_learning.registry import ModelStore
from online_learning.signing import AnnouncementSigner
from streams.kafka.announce import announce, publish, rollback
from streams.ops.status import Scrape, scrape
from streams.settings import Settings
from streams.worker.process import read_ready
from tests.integration.events import ITEMS, item_views
from tests.integration.kafka_io import produce

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

META = {"metrics": {"P@20": 1.0}}
ReadTopic = Callable[..., list[ConsumerRecord[bytes, bytes]]]


@pytest.fixture
def answered_versions(read_topic: ReadTopic) -> Callable[[Settings, int], dict[str, str]]:
    """``answered_versions(settings, count)``: once ``count`` events were answered, each one's
    model version; fails if an event was answered twice."""

    def versions(settings: Settings, count: int) -> dict[str, str]:
        topic = settings.recommendations_topic
        pairs = [
            orjson.loads(m.value)
            for m in read_topic(settings.bootstrap, topic, count=count, settle=0.5)
        ]
        ids = Counter(p["event_id"] for p in pairs)
        assert max(ids.values()) == 1, "an event was answered twice"
        return {p["event_id"]: p["model_version"] for p in pairs}

    return versions


def test_versions_swap_under_load_and_a_corrupt_one_is_rejected(
    kafka_bootstrap: str,
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], subprocess.Popen[bytes]],
    tiny_checkpoint: Callable[..., Path],
    answered_versions: Callable[[Settings, int], dict[str, str]],
    tmp_path: Path,
) -> None:
    settings = make_settings(kafka_bootstrap, "kafka", partitions=2, model_store=tmp_path / "store")
    start_worker(settings)
    asyncio.run(produce(settings.bootstrap, settings.events_topic, item_views(0, 50)))
    assert set(answered_versions(settings, 50).values()) == {BASELINE_VERSION}

    run1 = tiny_checkpoint(tmp_path / "run1", seed=1, items=ITEMS, meta=META)
    first = publish(settings, run1, parent=None)
    sent = 50
    deadline = time.monotonic() + 60
    while True:  # keep events flowing until the new version answers
        asyncio.run(produce(settings.bootstrap, settings.events_topic, item_views(sent, 10)))
        sent += 10
        if (
            first.version in answered_versions(settings, sent).values()
            or time.monotonic() > deadline
        ):
            break
    answered = answered_versions(settings, sent)
    assert len(answered) == sent and first.version in answered.values()
    # Trained without DP (no privacy in its meta): the worker's metrics flag it.
    served = _worker_metrics(tmp_path)
    assert served.value("intentstream_model_private", version=first.version) == 0.0
    assert served.value("intentstream_model_epsilon", version=first.version) == math.inf

    store = ModelStore(settings.model_store, name=settings.model_name)
    run2 = tiny_checkpoint(tmp_path / "run2", seed=2, items=ITEMS, meta=META)
    second = store.publish(run2, parent=first.version, metrics={}, privacy=None)
    (store.path(second.version) / "weights.pt").write_bytes(b"not a model")
    announce(settings, second)
    time.sleep(3)
    asyncio.run(produce(settings.bootstrap, settings.events_topic, item_views(sent, 40)))
    answered = answered_versions(settings, sent + 40)
    assert len(answered) == sent + 40  # nothing lost across two swaps
    assert second.version not in answered.values()
    assert {answered[f"e{n}"] for n in range(sent, sent + 40)} == {first.version}
    assert _swaps(tmp_path, "rejected") == 1
    assert store.info(second.version).status == "accepted"  # a worker only reads the store


def _worker_metrics(tmp_path: Path) -> Scrape:
    """One scrape of the worker's metrics endpoint."""
    port = read_ready(tmp_path / "worker.ready")["metrics_port"]
    worker = scrape(f"http://127.0.0.1:{port}/metrics")
    assert worker.error is None, worker.error
    return worker


def _swaps(tmp_path: Path, outcome: str) -> float:
    """The worker's ``intentstream_model_swaps_total`` of ``outcome``, from its metrics."""
    return _worker_metrics(tmp_path).value("intentstream_model_swaps_total", outcome=outcome) or 0.0


def _serve_until(
    settings: Settings,
    answered_versions: Callable[[Settings, int], dict[str, str]],
    version: str,
    sent: int,
) -> int:
    """Keep events flowing until ``version`` answers one (60 s at most); returns events sent."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        asyncio.run(produce(settings.bootstrap, settings.events_topic, item_views(sent, 10)))
        sent += 10
        if version in answered_versions(settings, sent).values():
            break
    return sent


def test_a_forged_announcement_is_never_served_and_only_a_rollback_rejects_for_everyone(
    kafka_bootstrap: str,
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], subprocess.Popen[bytes]],
    tiny_checkpoint: Callable[..., Path],
    answered_versions: Callable[[Settings, int], dict[str, str]],
    tmp_path: Path,
) -> None:
    settings = make_settings(
        kafka_bootstrap, "kafka", partitions=2, model_store=tmp_path / "store", text_search=False
    )
    run1 = tiny_checkpoint(tmp_path / "run1", seed=1, items=ITEMS, meta=META)
    first = publish(settings, run1, parent=None)
    start_worker(settings)  # ready once it serves the newest announced version
    store = ModelStore(settings.model_store, name=settings.model_name)
    run2 = tiny_checkpoint(tmp_path / "run2", seed=2, items=ITEMS, meta=META)
    second = store.publish(run2, parent=first.version, metrics={}, privacy=None)
    # Anyone who can write to the topic, with a plain producer: unsigned, then under a wrong key.
    forged = [second.to_bytes(), AnnouncementSigner(bytes(32)).sign(second).to_bytes()]
    asyncio.run(
        produce(settings.bootstrap, settings.models_topic, [(second.key, f) for f in forged])
    )
    time.sleep(3)
    asyncio.run(produce(settings.bootstrap, settings.events_topic, item_views(0, 40)))
    assert set(answered_versions(settings, 40).values()) == {first.version}
    assert _swaps(tmp_path, "rejected") == 2

    announce(settings, second)  # the same version, signed with the deployment's key
    store.set_current(second.version)  # as `intentstream model publish` would
    sent = _serve_until(settings, answered_versions, second.version, 40)
    assert second.version in answered_versions(settings, sent).values()

    rollback(settings, first.version)  # the operator's verdict holds for every worker
    assert store.info(second.version).status == "rejected"
    sent = _serve_until(settings, answered_versions, first.version, sent)
    asyncio.run(produce(settings.bootstrap, settings.events_topic, item_views(sent, 20)))
    answered = answered_versions(settings, sent + 20)
    assert {answered[f"e{n}"] for n in range(sent, sent + 20)} == {first.version}
