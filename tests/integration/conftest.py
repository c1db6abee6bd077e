"""Factories for integration tests: isolated settings, real worker processes, Kafka I/O."""

from __future__ import annotations

import contextlib
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from streams.brokers import LocalBroker, local_broker
from streams.errors import WorkerError
from streams.kafka.admin import ensure_topics
from streams.settings import BrokerKind, Settings
from streams.worker.process import wait_until_ready, worker_process

WORKER_READY_SECONDS = 90.0
TEST_KEY = "integration-test-key-0123456789abcdef"
TEST_MASTER_KEY = bytes(range(32))


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
            master_key=TEST_MASTER_KEY.hex(),
            home=tmp_path / "home",
            worker_loglevel="info",
            **{"metrics_port": 0, "learn_metrics_port": 0, **overrides},  # type: ignore[arg-type]
        )
        ensure_topics(settings)
        return settings

    return make


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[[Settings], subprocess.Popen[bytes]]]:
    """Factory of ready ``intentstream worker`` processes; all are stopped at teardown."""
    with contextlib.ExitStack() as running:

        def start(settings: Settings) -> subprocess.Popen[bytes]:
            settings = settings.model_copy(update={"ready_file": tmp_path / "worker.ready"})
            log_file = tmp_path / "worker.log"
            process = running.enter_context(worker_process(settings, log_file=log_file))
            try:
                wait_until_ready(process, tmp_path / "worker.ready", timeout=WORKER_READY_SECONDS)
            except WorkerError as exc:
                raise WorkerError(f"{exc}; log:\n{log_file.read_text()[-3000:]}") from exc
            return process

        yield start


def stop_worker(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM and wait, as an orchestrator would stop it; returns the exit code."""
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=30)


@pytest.fixture
def own_kafka(
    tmp_path: Path, settings: Settings, free_port: Callable[..., int]
) -> Iterator[LocalBroker]:
    """An Apache Kafka for this test alone, which it may stop and start again."""
    broker = local_broker(
        "kafka", home=tmp_path / "broker", port=free_port(span=2), cache=settings.home
    )
    broker.start()
    yield broker
    broker.stop()
