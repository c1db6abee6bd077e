"""The set-up the Kafka benchmarks share: a fresh broker, a run's own topics, a ready worker."""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

from streams.brokers import local_broker
from streams.brokers.probe import free_port
from streams.kafka.admin import ensure_topics
from streams.settings import DEFAULT_HOME, Settings
from streams.worker.process import read_ready, wait_until_ready, worker_process

KEY = "bench-pseudonym-key-0123456789abcdef"
MASTER_KEY = "ab" * 32


@contextlib.contextmanager
def fresh_kafka(workdir: Path) -> Iterator[str]:
    """A new local Apache Kafka (the project's script) under ``workdir``; yields its address."""
    broker = local_broker(
        "kafka", home=workdir / "kafka", port=free_port(span=2), cache=DEFAULT_HOME
    )
    bootstrap = broker.start()
    try:
        yield bootstrap
    finally:
        broker.stop()


def run_settings(bootstrap: str, name: str, workdir: Path, **extra: object) -> Settings:
    """Settings with topics and group of this run alone (created), any free metrics port."""
    run = f"{name}-{uuid.uuid4().hex[:8]}"
    settings = Settings(
        kafka=bootstrap,
        broker_kind="kafka",
        app_id=run,
        events_topic=f"events-{run}",
        recommendations_topic=f"recs-{run}",
        dlq_topic=f"dlq-{run}",
        items_topic=f"items-{run}",
        models_topic=f"models-{run}",
        privacy_requests_topic=f"requests-{run}",
        privacy_audit_topic=f"audit-{run}",
        pseudonym_key=KEY,
        master_key=MASTER_KEY,
        metrics_port=0,
        ready_file=workdir / f"{name}.ready",
        **extra,  # type: ignore[arg-type]
    )
    ensure_topics(settings)
    return settings


@contextlib.contextmanager
def ready_worker(
    settings: Settings, log_file: Path
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """An ``intentstream worker`` that has reported ready; yields it and its metrics URL."""
    assert settings.ready_file is not None
    with worker_process(settings, log_file=log_file) as worker:
        wait_until_ready(worker, settings.ready_file)
        port = read_ready(settings.ready_file)["metrics_port"]
        yield worker, f"http://127.0.0.1:{port}/metrics"
