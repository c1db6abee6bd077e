"""The learner on Apache Kafka honours erasure and records its privacy spend.

An erased user's events up to the erasure are never learned, even when the
learner reads them after the request or again after a crash; the versions a
DP-SGD learner publishes carry their spend, and a worker that requires DP-trained
models refuses the others.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from online_learning.registry import Announcement, ModelStore
from streams.kafka.announce import publish
from streams.ops.status import scrape
from streams.settings import Settings
from streams.worker.process import read_ready, worker_process
from tests.integration.events import ITEMS, item_views
from tests.integration.kafka_io import produce

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

WAIT_SECONDS = 90.0
ReadTopic = Callable[..., list[ConsumerRecord[bytes, bytes]]]


def _views(user: str, session: str, items: list[str]) -> list[tuple[bytes, bytes]]:
    """``user``'s views of ``items`` in one session, keyed by the raw user id."""
    return [
        (
            user.encode(),
            orjson.dumps(
                {
                    "event_id": f"{user}-{session}-{n}",
                    "user_id": user,
                    "session_id": session,
                    "ts": time.time(),
                    "type": "view",
                    "item_id": item,
                }
            ),
        )
        for n, item in enumerate(items)
    ]


def _vocabularies(store: ModelStore) -> dict[str, set[str]]:
    """Every stored version's item ids."""
    return {
        info.version: set(json.loads((info.path / "vocab.json").read_bytes()))
        for info in store.versions()
    }


def _wait_for(condition: Callable[[], bool], what: str, log: Path) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} in {WAIT_SECONDS:.0f} s; log:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


async def _rewind(settings: Settings, topic: str) -> None:
    """Commit offset 0 on every partition of ``topic`` for the learner's group.

    What a crash between committing the erasure and committing the events would
    leave: the restarted learner reads the events again. Retried until the killed
    member has left the group (its session timeout).
    """
    deadline = time.monotonic() + 60
    while True:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.bootstrap, group_id=f"{settings.app_id}-learn"
        )
        await consumer.start()
        try:
            partitions = [TopicPartition(topic, p) for p in range(settings.partitions)]
            consumer.assign(partitions)
            await consumer.commit(dict.fromkeys(partitions, 0))
            return
        except KafkaError:
            if time.monotonic() > deadline:
                raise
        finally:
            await consumer.stop()
        await asyncio.sleep(1)


def test_an_erased_user_is_never_learned_again_even_after_a_crash_rereads_their_events(
    learner_settings: Callable[..., Settings],
    tiny_checkpoint: Callable[..., Path],
    tmp_path: Path,
) -> None:
    settings = learner_settings(learn_update_every=4, learn_publish_every=16)
    store = ModelStore(settings.model_store, name=settings.model_name)
    publish(settings, tiny_checkpoint(tmp_path / "run", seed=1, items=ITEMS), parent=None)
    bootstrap, events = settings.bootstrap, settings.events_topic
    # Sent before the erasure (and read by the learner after it), then after it.
    asyncio.run(produce(bootstrap, events, _views("victim", "v1", ["a", "secret"])))
    erase = orjson.dumps({"action": "erase", "request_id": "r1"})
    asyncio.run(produce(bootstrap, settings.privacy_requests_topic, [(b"victim", erase)]))
    time.sleep(0.05)
    asyncio.run(produce(bootstrap, events, _views("victim", "v2", ["b", "comeback"])))
    asyncio.run(produce(bootstrap, events, _views("control", "c1", ["c", "fresh"])))
    asyncio.run(produce(bootstrap, events, item_views(0, 100)))

    def learned(*items: str) -> bool:
        return any(set(items) <= vocab for vocab in _vocabularies(store).values())

    log = tmp_path / "learn.log"
    with worker_process(settings, log_file=log, command="learn") as learner:
        _wait_for(lambda: learned("fresh", "comeback"), "version with the new items", log)
        os.kill(learner.pid, signal.SIGKILL)
        assert learner.wait(timeout=30) == -signal.SIGKILL
    assert not learned("secret")

    asyncio.run(_rewind(settings, events))
    restarted_at = time.time()
    with worker_process(settings, log_file=log, command="learn"):
        _wait_for(
            lambda: any(info.created_at > restarted_at for info in store.versions()),
            "version after the restart",
            log,
        )
    assert not learned("secret")
    assert "erased 1 users" in log.read_text()


def test_dp_versions_carry_their_spend_and_a_worker_requiring_dp_refuses_the_rest(
    learner_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], subprocess.Popen[bytes]],
    tiny_checkpoint: Callable[..., Path],
    read_topic: ReadTopic,
    tmp_path: Path,
) -> None:
    settings = learner_settings(
        learn_update_every=4,
        learn_publish_every=32,
        learn_dp_noise_multiplier=5.0,
        learn_dp_epsilon=100.0,  # room for this stream's DP steps
        probation_events=10**6,
        require_dp_models=True,
        text_search=False,
    )
    base_privacy = {"epsilon": 1.0, "delta": 1e-6, "accountant": "prv", "unit": "session"}
    plain = publish(settings, tiny_checkpoint(tmp_path / "plain", seed=2, items=ITEMS), parent=None)
    run = tiny_checkpoint(tmp_path / "dp", seed=1, items=ITEMS, meta={"privacy": base_privacy})
    base = publish(settings, run, parent=None)
    start_worker(settings)
    log = tmp_path / "learn.log"
    with worker_process(settings, log_file=log, command="learn"):
        asyncio.run(produce(settings.bootstrap, settings.events_topic, item_views(0, 200)))
        children: list[Announcement] = []

        def published() -> bool:
            out = read_topic(settings.bootstrap, settings.models_topic, count=3, timeout=3)
            children[:] = [
                a
                for a in map(Announcement.from_bytes, (m.value for m in out))
                if a.parent == base.version
            ]
            return bool(children)

        _wait_for(published, "child of the DP base version", log)
    child = children[0]
    assert child.privacy is not None and child.privacy.accountant == "rdp"
    assert child.privacy.epsilon > 1.0 and child.privacy.delta == pytest.approx(2e-6)
    stored = ModelStore(settings.model_store).path(child.version) / "meta.json"
    spend = json.loads(stored.read_text())["privacy"]
    assert spend["base"] == {
        "version": base.version,
        "epsilon": 1.0,
        "delta": 1e-6,
        "accountant": "prv",
    }
    assert spend["learner"]["steps"] > 0 and spend["unit"] == "session"

    late = publish(settings, tiny_checkpoint(tmp_path / "late", seed=3, items=ITEMS), parent=None)
    time.sleep(3)
    asyncio.run(produce(settings.bootstrap, settings.events_topic, item_views(200, 40)))
    recs = read_topic(settings.bootstrap, settings.recommendations_topic, count=240, settle=0.5)
    served = {orjson.loads(m.value)["model_version"] for m in recs}
    assert served and not {plain.version, late.version} & served
    port = read_ready(tmp_path / "worker.ready")["metrics_port"]
    worker = scrape(f"http://127.0.0.1:{port}/metrics")
    assert worker.error is None, worker.error
    assert worker.value("intentstream_model_swaps_total", outcome="rejected") == 2
