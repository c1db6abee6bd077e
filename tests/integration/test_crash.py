"""Crash safety on Apache Kafka: kill -9, rebalances; nothing lost, (almost) nothing twice.

The delivery guarantee (docs/reliability.md): events are consumed at least once;
a batch's recommendations reach the broker before its changelog records, and a
state that holds an event's offset is proof its recommendation was delivered,
so a redelivered event is not answered again. A crash can duplicate only the
answers of the one batch whose recommendations were acknowledged but whose
changelog records were not: at most ``batch_max`` events.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable

import pytest

from streams.settings import Settings
from tests.integration.backlog import (
    N_EVENTS,
    assert_every_event_answered_and_few_twice,
    count_answers,
)

pytestmark = [pytest.mark.integration, pytest.mark.kafka]


def test_kill_9_mid_stream_loses_nothing_and_duplicates_at_most_one_small_batch(
    kafka_bootstrap: str,
    backlog_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], subprocess.Popen[bytes]],
) -> None:
    settings = backlog_settings(kafka_bootstrap)
    worker = start_worker(settings)
    answered_before = count_answers(settings, N_EVENTS // 3, timeout=120)
    os.kill(worker.pid, signal.SIGKILL)  # mid-stream: no shutdown, no final commit
    worker.wait(timeout=30)
    assert answered_before < N_EVENTS, "the worker finished before it could be killed"

    start_worker(settings)  # recovers its tables from the changelogs, resumes
    assert_every_event_answered_and_few_twice(settings)


def test_a_worker_joining_and_one_leaving_mid_stream_lose_nothing(
    kafka_bootstrap: str,
    backlog_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], subprocess.Popen[bytes]],
) -> None:
    settings = backlog_settings(kafka_bootstrap)
    first = start_worker(settings)
    count_answers(settings, N_EVENTS // 4, timeout=120)
    start_worker(settings)  # joins the group: the partitions are shared out again
    count_answers(settings, N_EVENTS // 2, timeout=120)
    first.send_signal(signal.SIGTERM)  # leaves cleanly: the second worker takes over
    assert first.wait(timeout=60) == 0
    assert_every_event_answered_and_few_twice(settings)
