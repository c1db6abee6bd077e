"""Runs one Faust worker process in the foreground until SIGINT/SIGTERM.

Run it with ``intentstream worker``; scale out by starting more processes with
the same ``INTENTSTREAM_APP_ID`` (they share the consumer group).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import faust

from streams.admin import ensure_topics
from streams.app import create_app
from streams.settings import Settings

log = logging.getLogger(__name__)


def run_worker(settings: Settings) -> None:
    """Create missing topics, then run a worker; returns when it has stopped cleanly."""
    log.info("worker config: %s", settings.redacted())
    ensure_topics(settings)
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=settings.worker_loglevel, quiet=True)
    worker.execute_from_commandline()


@contextlib.contextmanager
def worker_process(
    settings: Settings, *, log_file: Path, stop_timeout: float = 30.0
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``intentstream worker`` as a child process configured by ``settings``.

    The child gets its own session, so a Ctrl-C in the terminal reaches only the
    parent, which then stops the worker in order (SIGTERM, wait, SIGKILL last).
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker"],
            env={**os.environ, **settings.as_environment()},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    log.info("worker pid %d started, log %s", process.pid, log_file)
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
