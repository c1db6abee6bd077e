"""The learner process on Apache Kafka: learns from the events, publishes, workers swap to it."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from aiokafka.structs import ConsumerRecord

from online_learning.registry import Announcement, ModelStore
from streams.kafka.announce import publish
from streams.ops.status import scrape
from streams.settings import Settings
from streams.worker.process import read_ready, worker_process
from tests.integration.events import ITEMS, item_views
from tests.integration.kafka_io import produce

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

ReadTopic = Callable[..., list[ConsumerRecord[bytes, bytes]]]


def test_the_learner_publishes_a_child_version_that_workers_serve(
    learner_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], subprocess.Popen[bytes]],
    tiny_checkpoint: Callable[..., Path],
    read_topic: ReadTopic,
    tmp_path: Path,
) -> None:
    settings = learner_settings()
    run = tiny_checkpoint(tmp_path / "run", seed=1, items=ITEMS, meta={"metrics": {"P@20": 1.0}})
    first = publish(settings, run, parent=None)
    start_worker(settings)
    with worker_process(settings, log_file=tmp_path / "learn.log", command="learn"):
        asyncio.run(produce(settings.bootstrap, settings.events_topic, item_views(0, 300)))
        deadline = time.monotonic() + 90
        children: list[Announcement] = []
        while not children and time.monotonic() < deadline:
            out = read_topic(
                settings.bootstrap, settings.models_topic, count=2, timeout=5, settle=0.1
            )
            children = [
                a
                for a in map(Announcement.from_bytes, (m.value for m in out))
                if a.parent == first.version
            ]
        assert children, (tmp_path / "learn.log").read_text()[-2000:]
        child = children[0]
        assert child.metrics["examples"] >= 64
        store = ModelStore(settings.model_store, name=settings.model_name)
        assert store.info(child.version).status == "accepted"
        time.sleep(2)
        out = read_topic(
            settings.bootstrap, settings.models_topic, count=10**6, timeout=3, settle=0.1
        )
        learned = {Announcement.from_bytes(m.value).version for m in out} - {first.version}
        asyncio.run(produce(settings.bootstrap, settings.events_topic, item_views(300, 40)))
        recs = read_topic(settings.bootstrap, settings.recommendations_topic, count=340, settle=0.5)
        versions = {
            orjson.loads(m.value)["event_id"]: orjson.loads(m.value)["model_version"] for m in recs
        }
        served = {versions[f"e{n}"] for n in range(300, 340)}
        # Read after the recommendations: a version is announced before any worker serves it.
        out = read_topic(
            settings.bootstrap, settings.models_topic, count=10**6, timeout=3, settle=0.1
        )
        learned = {Announcement.from_bytes(m.value).version for m in out} - {first.version}
        assert served and served <= learned  # only versions the learner published

        port = read_ready(tmp_path / "worker.ready")["metrics_port"]
        worker = scrape(f"http://127.0.0.1:{port}/metrics")
        assert worker.error is None, worker.error
        assert set(worker.labelled("intentstream_model_info", "version")) <= learned
        assert worker.value("intentstream_model_swaps_total", outcome="loaded") >= 1
        assert worker.value("intentstream_model_swap_seconds_count") >= 1
        assert sum(worker.labelled("intentstream_events_total", "type").values()) == 340
        assert worker.value("intentstream_online_checked_events_total", role="worker") > 0
        learner = scrape(f"http://127.0.0.1:{settings.learn_metrics_port}/metrics")
        assert learner.error is None, learner.error
        assert learner.value("intentstream_learn_examples_total") >= 64
        assert learner.value("intentstream_learn_published_total") >= 1
        assert learner.value("intentstream_online_checked_events_total", role="learner") > 0
