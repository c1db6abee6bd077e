"""Factories for integration tests: isolated settings, real worker processes, Kafka I/O."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from aiokafka.structs import ConsumerRecord

from streams.brokers import LocalBroker, local_broker
from streams.errors import WorkerError
from streams.kafka.admin import ensure_topics
from streams.settings import BrokerKind, Settings
from streams.worker.process import wait_until_ready, worker_process
from tests.integration.backlog import BATCH_MAX, N_EVENTS, shopper_events
from tests.integration.kafka_io import collect, produce

WORKER_READY_SECONDS = 90.0


@pytest.fixture(scope="session")
def pseudonym_key() -> str:
    """The pseudonym key of every worker these tests start."""
    return "integration-test-key-0123456789abcdef"


@pytest.fixture(scope="session")
def master_key() -> bytes:
    """The master key (32 bytes) of every worker these tests start."""
    return bytes(range(32))


@pytest.fixture
def make_settings(
    new_topic_name: Callable[[str], str], tmp_path: Path, pseudonym_key: str, master_key: bytes
) -> Callable[..., Settings]:
    """Settings with fresh topics, a fresh consumer group and the test keys, topics created."""

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
            ads_campaigns_topic=new_topic_name("ads-campaigns"),
            ads_spend_topic=new_topic_name("ads-spend"),
            ads_reports_topic=new_topic_name("ads-reports"),
            pseudonym_key=pseudonym_key,
            master_key=master_key.hex(),
            home=tmp_path / "home",
            worker_loglevel="info",
            **{"metrics_port": 0, "learn_metrics_port": 0, **overrides},  # type: ignore[arg-type]
        )
        ensure_topics(settings)
        return settings

    return make


@pytest.fixture
def learner_settings(
    kafka_bootstrap: str,
    make_settings: Callable[..., Settings],
    free_port: Callable[..., int],
    tmp_path: Path,
) -> Callable[..., Settings]:
    """Factory of settings for a worker beside ``intentstream learn`` on Apache Kafka.

    ``learner_settings(**overrides)``: 2 partitions, a model store in ``tmp_path / "store"``,
    the learner updating every 16 events, publishing every 64 and serving its metrics
    on a port of its own; ``overrides`` win.
    """

    def make(**overrides: object) -> Settings:
        options: dict[str, object] = {
            "partitions": 2,
            "model_store": tmp_path / "store",
            "learn_update_every": 16,
            "learn_publish_every": 64,
            "learn_metrics_port": free_port(),
        }
        return make_settings(kafka_bootstrap, "kafka", **{**options, **overrides})

    return make


@pytest.fixture
def backlog_settings(make_settings: Callable[..., Settings]) -> Callable[..., Settings]:
    """Factory of settings for the crash-style tests, with a backlog already in the events topic.

    ``backlog_settings(bootstrap, **overrides)``: 4 partitions, batches of at most
    ``BATCH_MAX``, no text search, and ``N_EVENTS`` shopper events produced
    (tests/integration/backlog.py); ``overrides`` win.
    """

    def make(bootstrap: str, **overrides: object) -> Settings:
        options: dict[str, object] = {
            "partitions": 4,
            "batch_max": BATCH_MAX,
            "text_search": False,
        }
        settings = make_settings(bootstrap, "kafka", **{**options, **overrides})
        asyncio.run(produce(settings.bootstrap, settings.events_topic, shopper_events(N_EVENTS)))
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


@pytest.fixture
def stop_worker() -> Callable[[subprocess.Popen[bytes]], int]:
    """Stops a worker as an orchestrator would: SIGTERM, then wait; returns the exit code."""

    def stop(process: subprocess.Popen[bytes]) -> int:
        process.send_signal(signal.SIGTERM)
        return process.wait(timeout=30)

    return stop


@pytest.fixture
def read_topics() -> Callable[..., dict[str, list[ConsumerRecord[bytes, bytes]]]]:
    """Reads topics from the beginning until ``count`` records came, then ``settle`` s more.

    ``read_topics(bootstrap, [topic, ...], count=N, timeout=60.0, settle=1.0)`` returns
    each topic's records (:func:`tests.integration.kafka_io.collect`); the extra
    seconds let duplicates or extras show up too.
    """

    def read(
        bootstrap: str,
        topics: Sequence[str],
        *,
        count: int,
        timeout: float = 60.0,
        settle: float = 1.0,
    ) -> dict[str, list[ConsumerRecord[bytes, bytes]]]:
        return asyncio.run(collect(bootstrap, topics, count=count, timeout=timeout, settle=settle))

    return read


@pytest.fixture
def read_topic(
    read_topics: Callable[..., dict[str, list[ConsumerRecord[bytes, bytes]]]],
) -> Callable[..., list[ConsumerRecord[bytes, bytes]]]:
    """``read_topics`` for one topic: ``read_topic(bootstrap, topic, count=N, ...)`` -> records."""

    def read(
        bootstrap: str, topic: str, *, count: int, timeout: float = 60.0, settle: float = 1.0
    ) -> list[ConsumerRecord[bytes, bytes]]:
        return read_topics(bootstrap, [topic], count=count, timeout=timeout, settle=settle)[topic]

    return read


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
