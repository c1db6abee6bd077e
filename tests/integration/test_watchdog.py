"""The watchdog on a real worker: stuck behind a broker that stopped answering, it exits 75.

The broker (this test's own) is paused with SIGSTOP while the worker works
through a backlog: the delivery in flight is never acknowledged, the next
fetched batch waits behind it, and the fetch loop stops turning. The worker
must end itself with ``EXIT_STALLED`` rather than hold its partitions for good;
started again once the broker runs, it answers every event (at-least-once: only
delivered batches were committed).
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from streams.brokers import LocalBroker
from streams.settings import Settings
from streams.worker.watchdog import EXIT_STALLED
from tests.integration.backlog import (
    N_EVENTS,
    assert_every_event_answered_and_few_twice,
    count_answers,
)

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

STALL_SECONDS = 5.0


def test_a_worker_stuck_behind_a_paused_broker_exits_75_and_a_restart_loses_nothing(
    own_kafka: LocalBroker,
    backlog_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    settings = backlog_settings(own_kafka.bootstrap, stall_seconds=STALL_SECONDS)
    worker = start_worker(settings)
    assert count_answers(settings, N_EVENTS // 10, timeout=120) < N_EVENTS
    broker_pid = own_kafka.status().pid
    assert broker_pid is not None
    os.killpg(os.getpgid(broker_pid), signal.SIGSTOP)
    try:
        exit_code = worker.wait(timeout=STALL_SECONDS * 6)
    finally:
        os.killpg(os.getpgid(broker_pid), signal.SIGCONT)
    log = (tmp_path / "worker.log").read_text()
    assert exit_code == EXIT_STALLED, log[-3000:]
    assert "fetch loop stuck" in log
    start_worker(settings)  # as compose's restart policy would
    assert_every_event_answered_and_few_twice(settings)
