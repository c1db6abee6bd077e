"""Crash safety on Apache Kafka: kill -9, rebalances; nothing lost, (almost) nothing twice.

The delivery guarantee (docs/reliability.md): events are consumed at least once;
a batch's recommendations reach the broker before its changelog records, and a
state that holds an event's offset is proof its recommendation was delivered,
so a redelivered event is not answered again. A crash can duplicate only the
answers of the one batch whose recommendations were acknowledged but whose
changelog records were not: at most ``batch_max`` events.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from streams.settings import Settings
from tests.integration.kafka_io import collect, produce

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

N_EVENTS = 20_000
#: Small batches, so that the one batch a crash may answer twice is <= 0.1 % of the events.
BATCH_MAX = 20


def _events(count: int) -> list[tuple[bytes, bytes]]:
    out = []
    for n in range(count):
        user = f"shopper-{n % 500}"
        event = {
            "event_id": f"e{n}",
            "user_id": user,
            "session_id": f"s{n % 500}",
            "ts": 1.7e9 + n,
            "type": "view",
            "item_id": f"i{n % 97}",
        }
        out.append((user.encode(), orjson.dumps(event)))
    return out


def with_backlog(make: Callable[..., Settings], bootstrap: str, **overrides: object) -> Settings:
    """Settings for these tests (4 partitions, small batches), ``N_EVENTS`` already produced."""
    settings = make(
        bootstrap, "kafka", partitions=4, batch_max=BATCH_MAX, text_search=False, **overrides
    )
    asyncio.run(produce(settings.bootstrap, settings.events_topic, _events(N_EVENTS)))
    return settings


async def _count_answers(settings: Settings, at_least: int, timeout: float) -> int:
    """Wait until the recommendations topic holds ``at_least`` records; returns how many."""
    consumer = AIOKafkaConsumer(
        settings.recommendations_topic,
        bootstrap_servers=settings.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    seen, deadline = 0, time.monotonic() + timeout
    try:
        while seen < at_least and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            seen += sum(map(len, batches.values()))
    finally:
        await consumer.stop()
    return seen


def _assert_every_event_answered_and_few_twice(settings: Settings) -> None:
    out = asyncio.run(
        collect(
            settings.bootstrap,
            [settings.recommendations_topic],
            count=N_EVENTS,
            timeout=180,
            settle=3.0,
        )
    )[settings.recommendations_topic]
    answers = Counter(orjson.loads(m.value)["event_id"] for m in out)
    missing = {f"e{n}" for n in range(N_EVENTS)} - set(answers)
    assert not missing, f"{len(missing)} accepted events never answered"
    duplicates = sum(count - 1 for count in answers.values())
    assert duplicates <= N_EVENTS // 1000, f"{duplicates} duplicate answers"


def test_kill_9_mid_stream_loses_nothing_and_duplicates_at_most_one_small_batch(
    kafka_bootstrap: str,
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], subprocess.Popen[bytes]],
) -> None:
    settings = with_backlog(make_settings, kafka_bootstrap)
    worker = start_worker(settings)
    answered_before = asyncio.run(_count_answers(settings, N_EVENTS // 3, timeout=120))
    os.kill(worker.pid, signal.SIGKILL)  # mid-stream: no shutdown, no final commit
    worker.wait(timeout=30)
    assert answered_before < N_EVENTS, "the worker finished before it could be killed"

    start_worker(settings)  # recovers its tables from the changelogs, resumes
    _assert_every_event_answered_and_few_twice(settings)


def test_a_worker_joining_and_one_leaving_mid_stream_lose_nothing(
    kafka_bootstrap: str,
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], subprocess.Popen[bytes]],
) -> None:
    settings = with_backlog(make_settings, kafka_bootstrap)
    first = start_worker(settings)
    asyncio.run(_count_answers(settings, N_EVENTS // 4, timeout=120))
    start_worker(settings)  # joins the group: the partitions are shared out again
    asyncio.run(_count_answers(settings, N_EVENTS // 2, timeout=120))
    first.send_signal(signal.SIGTERM)  # leaves cleanly: the second worker takes over
    assert first.wait(timeout=60) == 0
    _assert_every_event_answered_and_few_twice(settings)
