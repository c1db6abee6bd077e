"""Crash safety on Apache Kafka: the broker restarts mid-stream.

The broker is this test's own, since it is stopped (cleanly, or with SIGKILL)
and started again on the same port and data folder while a worker serves.
Topics and records persist, and the delivery guarantee of docs/reliability.md
holds across the outage: every event answered, at most one small batch twice.
The recovery time (broker ready again -> first answer to a new event) is
printed; its bound guards correctness, it is no performance target
(``bench/kafka_restart.py`` measures it).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from streams.brokers import LocalBroker
from streams.settings import Settings
from tests.integration.backlog import BATCH_MAX, shopper_events
from tests.integration.restart import restart_mid_stream

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

N_EVENTS = 6_000
#: Generous: a worker that needs longer than this to resume is broken, not slow.
RECOVERY_BOUND_SECONDS = 60.0


@pytest.mark.parametrize("hard", [False, True], ids=["sigterm", "sigkill"])
def test_a_kafka_restart_mid_stream_keeps_the_data_and_loses_no_event(
    own_kafka: LocalBroker,
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], subprocess.Popen[bytes]],
    tmp_path: Path,
    hard: bool,
) -> None:
    settings = make_settings(
        own_kafka.bootstrap, "kafka", partitions=4, batch_max=BATCH_MAX, text_search=False
    )
    run = restart_mid_stream(
        own_kafka,
        settings,
        shopper_events(N_EVENTS),
        start_worker=lambda: start_worker(settings),
        hard=hard,
        answered_first=N_EVENTS // 10,
    )
    print(f"broker restart ({'SIGKILL' if hard else 'SIGTERM'}): {run}")
    assert run.answered_before_stop < N_EVENTS // 2, "the worker was idle when the broker stopped"
    assert run.persisted == N_EVENTS // 2, "events from before the restart are gone"
    assert run.lost == 0, f"{run.lost} accepted events never answered"
    assert run.duplicates <= N_EVENTS // 1000, f"{run.duplicates} duplicate answers"
    assert run.recovery_seconds < RECOVERY_BOUND_SECONDS
    log = (tmp_path / "worker.log").read_text()
    assert all(code != 0 for code in run.worker_exit_codes), log[-3000:]
