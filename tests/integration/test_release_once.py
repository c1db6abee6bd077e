"""A privacy window is released once, across a worker restart and the users' erasure.

A second release of the same window with fresh noise would let an observer
average the noise away. After the first worker released a window, a new worker
gets the same users' events for that window again (after erasing them, which
used to reset their bound): it must not release that window a second time.
"""

from __future__ import annotations

import asyncio
import math
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from aiokafka.structs import ConsumerRecord

from streams.ops.status import scrape
from streams.settings import Settings
from streams.worker.process import read_ready
from tests.integration.kafka_io import produce

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

ReadTopic = Callable[..., list[ConsumerRecord[bytes, bytes]]]
WINDOW = 10.0
USERS = [f"crowd-{n}" for n in range(20)]


def _view(user: str, event_id: str, ts: float) -> tuple[bytes, bytes]:
    event = {"event_id": event_id, "user_id": user, "ts": ts, "type": "view", "item_id": "hit"}
    return user.encode(), orjson.dumps(event)


def _released(tmp_path: Path) -> float:
    port = read_ready(tmp_path / "worker.ready")["metrics_port"]
    metrics = scrape(f"http://127.0.0.1:{port}/metrics")
    assert metrics.error is None, metrics.error
    return metrics.value("intentstream_privacy_windows_released_total") or 0.0


def test_a_window_is_released_once_across_restart_and_erasure(
    kafka_bootstrap: str,
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], subprocess.Popen[bytes]],
    stop_worker: Callable[[subprocess.Popen[bytes]], int],
    read_topic: ReadTopic,
    tmp_path: Path,
) -> None:
    settings = make_settings(
        kafka_bootstrap, "kafka", partitions=1, text_search=False, privacy_window_seconds=WINDOW
    )
    start = math.floor(time.time() / WINDOW) * WINDOW - 10 * WINDOW  # a window in the past
    worker = start_worker(settings)
    first = [_view(u, f"{u}-a", start + 1) for u in USERS] + [_view("z", "z-a", start + 12)]
    asyncio.run(produce(settings.bootstrap, settings.events_topic, first))
    read_topic(settings.bootstrap, settings.recommendations_topic, count=len(first))
    assert _released(tmp_path) == 1
    assert stop_worker(worker) == 0

    start_worker(settings)
    erase = [(u.encode(), orjson.dumps({"action": "erase", "request_id": u})) for u in USERS]
    asyncio.run(produce(settings.bootstrap, settings.privacy_requests_topic, erase))
    read_topic(settings.bootstrap, settings.privacy_audit_topic, count=len(USERS))
    time.sleep(0.05)
    again = [_view(u, f"{u}-b", start + 2) for u in USERS] + [_view("z", "z-b", start + 25)]
    asyncio.run(produce(settings.bootstrap, settings.events_topic, again))
    read_topic(settings.bootstrap, settings.recommendations_topic, count=len(first) + len(again))
    assert _released(tmp_path) == 0  # the window of start + 2 was released by the first worker
