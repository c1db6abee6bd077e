"""Factories for integration tests: isolated settings, real worker processes, Kafka I/O."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from streams.admin import ensure_topics
from streams.settings import BrokerKind, Settings

WORKER_READY_SECONDS = 90.0
TEST_KEY = "integration-test-key-0123456789abcdef"


@pytest.fixture
def make_settings(new_topic_name: Callable[[str], str], tmp_path: Path) -> Callable[..., Settings]:
    """Settings with fresh topics, a fresh consumer group and a test key, topics created."""

    def make(bootstrap: str, kind: BrokerKind, **overrides: object) -> Settings:
        settings = Settings(
            kafka=bootstrap,
            broker_kind=kind,
            app_id=new_topic_name("app"),
            events_topic=new_topic_name("events"),
            recommendations_topic=new_topic_name("recs"),
            dlq_topic=new_topic_name("dlq"),
            items_topic=new_topic_name("items"),
            privacy_requests_topic=new_topic_name("privacy-req"),
            privacy_audit_topic=new_topic_name("privacy-audit"),
            models_topic=new_topic_name("models"),
            pseudonym_key=TEST_KEY,
            home=tmp_path / "home",
            worker_loglevel="info",
            **overrides,  # type: ignore[arg-type]
        )
        ensure_topics(settings)
        return settings

    return make


class WorkerProcess:
    """A real ``intentstream worker`` child process, configured through the environment."""

    def __init__(self, settings: Settings, log_file: Path) -> None:
        self.log_file = log_file
        env = {**os.environ, **settings.as_environment()}
        with open(log_file, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "worker"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self._ready_marks = log_file.read_text(errors="replace").count("[^Worker]: Ready")

    def wait_ready(self, timeout: float = WORKER_READY_SECONDS) -> None:
        """Block until Faust says the worker is ready (assigned and recovered)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_file.read_text(errors="replace")
            if text.count("[^Worker]: Ready") > self._ready_marks and "Worker ready" in text:
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited {self.process.returncode}:\n{text[-3000:]}")
            time.sleep(0.2)
        raise TimeoutError(f"worker not ready in {timeout} s:\n{self.log_file.read_text()[-3000:]}")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait: a clean shutdown, as an orchestrator would do it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise
        return self.process.returncode


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[[Settings], WorkerProcess]]:
    """Factory of ready worker processes; all are stopped at teardown."""
    started: list[WorkerProcess] = []

    def start(settings: Settings) -> WorkerProcess:
        worker = WorkerProcess(settings, tmp_path / "worker.log")
        started.append(worker)
        worker.wait_ready()
        return worker

    yield start
    for worker in started:
        worker.stop()
