"""Runs one Faust worker process in the foreground until SIGINT/SIGTERM.

Run it with ``intentstream worker``; scale out by starting more processes with
the same ``INTENTSTREAM_APP_ID`` (they share the consumer group).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import faust
from mode import ServiceT

from streams.errors import WorkerError
from streams.http.service import advertised_url, api_service, bind
from streams.kafka.admin import ensure_topics, wait_for_group_coordinator
from streams.kafka.key_check import verify_keys
from streams.metrics.common import serve
from streams.metrics.worker import WorkerMetrics
from streams.pipeline.crypto import load_master_key
from streams.pipeline.pseudonyms import load_pseudonym_key
from streams.settings import Settings
from streams.worker.app import WorkerApp, create_app
from streams.worker.watchdog import watch

log = logging.getLogger(__name__)

#: Allocations between young-generation collections (CPython's default is 700).
GC_YOUNG_THRESHOLD = 50_000


class ReadinessWorker(faust.Worker):
    """A Faust worker that writes ``ready_file`` once started and every ``ready`` event is set.

    The file holds ``{"pid": ..., "metrics_port": ..., "http_port": ...}`` (the ports
    matter when they were 0). ``services`` (the HTTP API) start before the app. Once
    ready, the API's backend is told so, and a watchdog ends the process if its
    fetch loop stops (streams/worker/watchdog.py).
    """

    def __init__(
        self,
        app: WorkerApp,
        *services: ServiceT,
        ready_file: Path | None,
        ready: list[asyncio.Event],
        metrics_port: int,
        http_port: int | None = None,
        stall_seconds: float,
        **kwargs: Any,
    ) -> None:
        super().__init__(app, *services, **kwargs)
        self._ready_file = ready_file
        self._ready = ready
        self._metrics_port = metrics_port
        self._http_port = http_port
        self._stall_seconds = stall_seconds

    async def on_startup_finished(self) -> None:
        await super().on_startup_finished()
        for event in self._ready:
            await event.wait()
        settle_heap()
        app: WorkerApp = self.app  # type: ignore[assignment]
        app.api.started = True
        if self._ready_file is not None:
            write_ready(
                self._ready_file, metrics_port=self._metrics_port, http_port=self._http_port
            )
        watch(self._fetch_progress, self._stall_seconds)

    def _fetch_progress(self) -> tuple[float | None, bool]:
        return fetch_progress(self.app)


def fetch_progress(app: faust.App) -> tuple[float | None, bool]:
    """(When the worker last made progress, whether it should be making it now), for the
    watchdog.

    Progress is the fetch loop coming back; while the tables' changelogs are read back
    after a rebalance, it is a changelog record arriving (or the recovery starting):
    a recovery has been seen to receive nothing while the fetch loop kept turning
    (docs/reliability.md), and it should not hold its partitions for good.
    """
    recovery = app.tables.recovery
    if recovery.in_recovery:
        # faust-streaming keeps these on the recovery service (0.15.3): monotonic times.
        received = recovery._active_events_received_at.values()
        return max(received, default=recovery._recovery_started_at), True
    consumer = app.consumer
    fetching = consumer.flow_active and not app.rebalancing
    return getattr(consumer, "last_fetch", None), fetching


def settle_heap() -> None:
    """Keep the cyclic garbage collector off what start-up built; collect young objects rarely.

    The libraries, the model and the tables' first contents live as long as the
    process; left in the collected generations, every full collection walks all of
    them again, and at CPython's default thresholds the collector took a third of
    the pipeline's time per event (``bench/pipeline_speed.py --gc default``).
    Reference counting still frees at once everything that is not in a cycle. (No
    collection first: it would add 0.15 s to the time until the worker is ready.)
    """
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def write_ready(ready_file: Path, *, metrics_port: int, http_port: int | None = None) -> None:
    """Say this process is ready, with its pid and ports (:func:`read_ready`)."""
    ready_file.parent.mkdir(parents=True, exist_ok=True)
    ready: dict[str, int] = {"pid": os.getpid(), "metrics_port": metrics_port}
    if http_port is not None:
        ready["http_port"] = http_port
    ready_file.write_text(json.dumps(ready))


def read_ready(ready_file: Path) -> dict[str, int]:
    """What a ready process wrote: its ``pid``, ``metrics_port`` and (a worker) ``http_port``."""
    return dict(json.loads(ready_file.read_text()))


def run_worker(settings: Settings) -> None:
    """Create missing topics, then run a worker; returns when it has stopped cleanly."""
    log.info("worker config: %s", settings.redacted())
    ensure_topics(settings)
    wait_for_group_coordinator(settings)
    pseudonym_key, master_key = load_pseudonym_key(settings), load_master_key(settings)
    verify_keys(settings, master=master_key, pseudonym=pseudonym_key)
    ready: list[asyncio.Event] = []
    metrics = WorkerMetrics()
    port = serve(metrics.registry, settings.metrics_port, host=settings.metrics_host)
    # Bound before the app is built: it advertises the API's URL when it joins the group.
    http_socket = bind(settings.http_host, settings.http_port)
    http_port = int(http_socket.getsockname()[1])
    app = create_app(
        settings,
        pseudonym_key=pseudonym_key,
        master_key=master_key,
        ready=ready,
        metrics=metrics,
        web_url=advertised_url(settings, http_port),
    )
    api = api_service(settings, app.api, sock=http_socket, registry=metrics.registry)
    if settings.ready_file is not None:
        settings.ready_file.unlink(missing_ok=True)
    worker = ReadinessWorker(
        app,
        api,
        ready_file=settings.ready_file,
        ready=ready,
        metrics_port=port,
        http_port=http_port,
        stall_seconds=settings.stall_seconds,
        loglevel=settings.worker_loglevel,
        quiet=True,
    )
    try:
        worker.execute_from_commandline()
    finally:
        if settings.ready_file is not None:
            settings.ready_file.unlink(missing_ok=True)


def wait_until_ready(
    process: subprocess.Popen[bytes], ready_file: Path, *, timeout: float = 120.0
) -> None:
    """Block until the worker created ``ready_file``.

    Raises:
        WorkerError: the worker exited first, or did not get ready in time.
    """
    deadline = time.monotonic() + timeout
    while not ready_file.exists():
        if process.poll() is not None:
            raise WorkerError(f"worker exited with code {process.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise WorkerError(f"worker not ready after {timeout:.0f} s")
        time.sleep(0.1)


@contextlib.contextmanager
def worker_process(
    settings: Settings,
    *,
    log_file: Path,
    stop_timeout: float = 30.0,
    command: Literal["worker", "learn"] = "worker",
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``intentstream worker`` (or ``learn``) as a child process configured by ``settings``.

    The child gets its own session, so a Ctrl-C in the terminal reaches only the
    parent, which then stops the worker in order (SIGTERM, wait, SIGKILL last).
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    if settings.ready_file is not None:
        settings.ready_file.unlink(missing_ok=True)
    with open(log_file, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "streams.ops.cli", command],
            env={**os.environ, **settings.as_environment()},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    log.info("%s pid %d started, log %s", command, process.pid, log_file)
    try:
        yield process
    finally:
        _stop(process, timeout=stop_timeout)


def _stop(process: subprocess.Popen[bytes], *, timeout: float) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        log.warning("worker did not stop in %.0f s; killing it", timeout)
        process.kill()
        process.wait()
