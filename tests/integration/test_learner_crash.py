"""Crash safety of the learner: ``intentstream learn`` killed with SIGKILL mid-learning.

While a worker serves, the learner is killed in the middle of a publish when
the test catches one (a version staged, or stored but not yet ``CURRENT``),
else wherever it is. The worker must answer every event meanwhile; the store
must never name a half-written version ``CURRENT`` (a publish stages, then
renames, ``online_learning/registry.py``) and every stored version must still
verify; a restarted learner starts from ``CURRENT``, publishes children the
worker serves, and continues the DP-SGD spend instead of starting it again.
``tests/integration/test_learn.py`` covers the learner without a crash.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from aiokafka.structs import ConsumerRecord

from online_learning.registry import ModelStore
from streams.kafka.announce import publish
from streams.ops.status import scrape
from streams.settings import Settings
from streams.worker.process import read_ready, worker_process
from tests.integration.events import ITEMS, item_views
from tests.integration.kafka_io import produce

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

WAIT_SECONDS = 90.0


def _wait_for(condition: Callable[[], bool], what: str, log: Path, *, every: float = 0.1) -> None:
    """Poll ``condition`` every ``every`` seconds until it holds; fail with the learner's log."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(
                f"no {what} after {WAIT_SECONDS:.0f} s; learner log:\n{log.read_text()[-3000:]}"
            )
        time.sleep(every)


def _publishing(store: ModelStore) -> bool:
    """Whether a publish is under way: a version staged, or stored but not yet ``CURRENT``."""
    staged = any(p.name.startswith(".staging-") for p in store.root.iterdir())
    newest = store.versions()[0].version
    return staged or newest != store.current()


def _since(store: ModelStore, started: float) -> set[str]:
    """The versions published after ``started`` (seconds since the epoch)."""
    return {info.version for info in store.versions() if info.created_at > started}


def _serves_one_of(versions: set[str], ready_file: Path) -> bool:
    """Whether the worker scores with one of ``versions`` now (its metrics say)."""
    port = read_ready(ready_file)["metrics_port"]
    info = scrape(f"http://127.0.0.1:{port}/metrics").labelled("intentstream_model_info", "version")
    return bool(info) and set(info) <= versions


def test_a_learner_killed_mid_learning_leaves_the_store_whole_and_a_restart_goes_on(
    learner_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], subprocess.Popen[bytes]],
    tiny_checkpoint: Callable[..., Path],
    read_topic: Callable[..., list[ConsumerRecord[bytes, bytes]]],
    tmp_path: Path,
) -> None:
    settings = learner_settings(
        # With DP-SGD an update waits for this many distinct sessions; item_views has 7 users.
        learn_update_every=4,
        learn_publish_every=32,
        learn_dp_noise_multiplier=5.0,
        learn_dp_epsilon=100.0,  # room for this stream's few hundred DP steps
        learn_dp_epsilon_per_window=100.0,  # all of it in this test's window
        # The worker's probation would judge versions on these few events by chance.
        probation_events=10**6,
    )
    store = ModelStore(settings.model_store, name=settings.model_name)
    run = tiny_checkpoint(tmp_path / "run", seed=1, items=ITEMS, meta={"metrics": {"P@20": 1.0}})
    first = publish(settings, run, parent=None)
    start_worker(settings)
    log = tmp_path / "learn.log"
    with worker_process(settings, log_file=log, command="learn") as learner:
        asyncio.run(produce(settings.bootstrap, settings.events_topic, item_views(0, 200)))
        _wait_for(lambda: store.current() != first.version, "published version", log)
        asyncio.run(produce(settings.bootstrap, settings.events_topic, item_views(200, 100)))
        # Every 5 ms: a publish is over in tens of milliseconds.
        _wait_for(lambda: _publishing(store), "publish in progress", log, every=0.005)
        os.kill(learner.pid, signal.SIGKILL)
        assert learner.wait(timeout=30) == -signal.SIGKILL

    killed_at = store.current()
    assert killed_at is not None
    store.load(killed_at)  # raises when CURRENT is half-written or corrupt
    for info in store.versions():
        store.load(info.version)
    spent_before = store.info(killed_at).metrics["stream_epsilon"]

    restarted_at = time.time()
    with worker_process(settings, log_file=log, command="learn"):
        asyncio.run(produce(settings.bootstrap, settings.events_topic, item_views(300, 100)))
        _wait_for(
            lambda: _serves_one_of(_since(store, restarted_at), tmp_path / "worker.ready"),
            "version of the restarted learner served",
            log,
        )
        asyncio.run(produce(settings.bootstrap, settings.events_topic, item_views(400, 40)))
        out = read_topic(settings.bootstrap, settings.recommendations_topic, count=440, settle=1.0)

    answers = [orjson.loads(m.value) for m in out]
    counts = Counter(a["event_id"] for a in answers)
    assert set(counts) == {f"e{n}" for n in range(440)}, "events the worker never answered"
    assert max(counts.values()) == 1, "an event answered twice"
    after = [info for info in store.versions() if info.created_at > restarted_at]
    assert after[-1].parent == killed_at  # the oldest one since the restart
    assert after[-1].metrics["stream_epsilon"] > spent_before
    last = {f"e{n}" for n in range(400, 440)}
    assert {a["model_version"] for a in answers if a["event_id"] in last} <= _since(
        store, restarted_at
    )
