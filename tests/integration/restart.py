"""An Apache Kafka restart in the middle of a stream: what the restart test and
``bench/kafka_restart.py`` both run.

A worker serves while part of the events is produced; the broker is then
stopped (SIGTERM, or SIGKILL to the JVM) and started again on the same port and
data folder; the rest is produced. The run reports whether the events from
before the restart were still in the topic, how long after the broker was ready
again the worker answered again, and answered the first event produced after the
restart, and how many events were answered never or more than once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson

from streams.brokers import LocalBroker
from streams.brokers.probe import port_in_use
from streams.errors import WorkerError
from streams.settings import Settings
from tests.integration.backlog import count_answers
from tests.integration.kafka_io import collect, produce

#: Seconds a worker may take for the answers awaited before the restart.
FIRST_ANSWERS_SECONDS = 120.0
#: Seconds a worker may take to answer everything once the broker is back.
DRAIN_TIMEOUT_SECONDS = 180.0


@dataclass(frozen=True)
class RestartRun:
    """What one broker restart mid-stream did to the stream.

    Attributes:
        events: Events produced in all.
        persisted: Events produced before the restart that were read back after it.
        answered_before_stop: Answers sent before the broker's stop began; below
            ``events // 2`` the outage hit a worker with work left.
        outage_seconds: From the start of the broker's stop until it was ready again.
        resumed_seconds: From the restarted broker being ready until the worker's first
            answer after that (any event; timestamps the worker's producer set).
        recovery_seconds: The same until the first answer to an event produced after
            the restart; longer than ``resumed_seconds`` by any backlog from before.
        lost: Events never answered.
        duplicates: Answers beyond the first for an event.
        worker_exit_codes: Exit codes of workers that died and were started again.
    """

    events: int
    persisted: int
    answered_before_stop: int
    outage_seconds: float
    resumed_seconds: float
    recovery_seconds: float
    lost: int
    duplicates: int
    worker_exit_codes: tuple[int, ...]


def kill_hard(broker: LocalBroker) -> None:
    """SIGKILL the broker's process group, as a crash or an OOM kill would: no clean shutdown.

    ``LocalBroker.stop`` only ends a broker cleanly (SIGTERM first), so the kill
    goes through its pid; the next ``start`` drops the stale pid file. Returns once
    its ports are free: a killed JVM's threads outlive its main one for a moment.
    """
    pid = broker.status().pid
    if pid is None:
        raise RuntimeError(f"no broker runs on {broker.bootstrap}")
    os.killpg(os.getpgid(pid), signal.SIGKILL)
    port = int(broker.bootstrap.rpartition(":")[2])
    ports = (port, port + 1)  # Kafka's controller listens on port + 1 (``local_broker``)
    deadline = time.monotonic() + 30
    while broker.status().running or any(map(port_in_use, ports)):
        if time.monotonic() > deadline:
            raise RuntimeError(f"broker pid {pid} still runs or holds its ports after SIGKILL")
        time.sleep(0.05)


def restart_mid_stream(
    broker: LocalBroker,
    settings: Settings,
    events: Sequence[tuple[bytes, bytes]],
    *,
    start_worker: Callable[[], subprocess.Popen[bytes]],
    hard: bool,
    answered_first: int,
) -> RestartRun:
    """Serve ``events[:half]``, restart ``broker`` once ``answered_first`` are answered, serve
    the rest; a worker that died meanwhile is started again, as an orchestrator would.

    Args:
        broker: The running broker ``settings`` point at; restarted in place.
        settings: The run's topics (created) and worker configuration.
        events: ``(key, value)`` pairs whose values carry unique ``event_id`` s.
        start_worker: Starts a ready worker and returns its process.
        hard: SIGKILL the broker (:func:`kill_hard`) instead of stopping it cleanly.
        answered_first: Answers to wait for before the restart.

    Raises:
        WorkerError: the worker stalled before the restart (nothing was restarted).
    """
    half = len(events) // 2
    worker = start_worker()
    asyncio.run(produce(settings.bootstrap, settings.events_topic, events[:half]))
    _wait_for_answers(settings, answered_first)
    stopped, stopped_wall = time.monotonic(), time.time()
    if hard:
        kill_hard(broker)
    else:
        broker.stop()
    broker.start()
    ready_wall, outage = time.time(), time.monotonic() - stopped
    asyncio.run(produce(settings.bootstrap, settings.events_topic, events[half:]))
    exit_codes = _keep_serving(settings, worker, start_worker, count=len(events))
    ids = [orjson.loads(value)["event_id"] for _, value in events]
    stored = asyncio.run(
        collect(settings.bootstrap, [settings.events_topic], count=len(events), settle=0.5)
    )[settings.events_topic]
    persisted = set(ids[:half]) & {orjson.loads(m.value)["event_id"] for m in stored}
    answers = _answers(settings, count=len(events))
    after = set(ids[half:])
    first_after = min(ts for event_id, ts in answers if event_id in after)
    counts = Counter(event_id for event_id, _ in answers)
    return RestartRun(
        events=len(events),
        persisted=len(persisted),
        answered_before_stop=sum(1 for _, ts in answers if ts < stopped_wall),
        outage_seconds=outage,
        resumed_seconds=min(ts for _, ts in answers if ts >= ready_wall) - ready_wall,
        recovery_seconds=first_after - ready_wall,
        lost=len(set(ids) - set(counts)),
        duplicates=sum(counts.values()) - len(counts),
        worker_exit_codes=tuple(exit_codes),
    )


def _wait_for_answers(settings: Settings, count: int) -> None:
    """Wait until ``count`` answers exist, so that the restart hits a serving worker.

    Raises:
        WorkerError: fewer came within :data:`FIRST_ANSWERS_SECONDS`; the worker
            stalled before any restart (a known hang, docs/reliability.md).
    """
    answered = count_answers(settings, count, timeout=FIRST_ANSWERS_SECONDS)
    if answered < count:
        raise WorkerError(
            f"the worker answered {answered} of {count} events in {FIRST_ANSWERS_SECONDS:.0f} s, "
            "before any restart: it stalled on its own"
        )


def _keep_serving(
    settings: Settings,
    worker: subprocess.Popen[bytes],
    start_worker: Callable[[], subprocess.Popen[bytes]],
    *,
    count: int,
) -> list[int]:
    """Wait until ``count`` answers exist, starting a new worker whenever the last one died."""
    exit_codes: list[int] = []
    deadline = time.monotonic() + DRAIN_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            exit_codes.append(worker.returncode)
            worker = start_worker()
        if count_answers(settings, count, timeout=5) >= count:
            break
    return exit_codes


def _answers(settings: Settings, *, count: int) -> list[tuple[str, float]]:
    """Every answer's ``event_id`` and timestamp (seconds since the epoch; set when the
    worker sent it)."""
    out = asyncio.run(
        collect(settings.bootstrap, [settings.recommendations_topic], count=count, settle=3.0)
    )[settings.recommendations_topic]
    return [(orjson.loads(m.value)["event_id"], m.timestamp / 1000) for m in out]
