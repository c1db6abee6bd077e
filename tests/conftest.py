"""Shared fixtures: real brokers for the integration tests, and fresh topic names.

The brokers start once per session on free ports, with their state in a
temporary folder; the Kafka jars come from the user's cache (``Settings.home``)
so only the first run ever downloads them. A broker that will not start fails
the tests that need it; nothing is skipped.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest
from hypothesis import settings as hypothesis_settings

from streams.brokers import LocalBroker, local_broker
from streams.brokers.probe import free_port as free_port_on_host
from streams.settings import Settings

# CI (`CI=true`) runs the property tests derandomized: the same examples every run, so
# a result there is reproducible; local runs keep drawing new examples and find new bugs.
hypothesis_settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")


@pytest.fixture(scope="session")
def settings() -> Settings:
    """The configuration of this test run (``INTENTSTREAM_*`` variables)."""
    return Settings()


@pytest.fixture(scope="session")
def local_kafka(
    tmp_path_factory: pytest.TempPathFactory, settings: Settings
) -> Iterator[LocalBroker]:
    """An Apache Kafka started for this session, stopped at its end."""
    broker = local_broker(
        "kafka",
        home=tmp_path_factory.mktemp("kafka"),
        port=free_port_on_host(span=2),
        cache=settings.home,
    )
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(request: pytest.FixtureRequest, settings: Settings) -> str:
    """Bootstrap servers of Apache Kafka: ``INTENTSTREAM_KAFKA`` if set, else ``local_kafka``."""
    if settings.kafka:
        return settings.kafka
    broker: LocalBroker = request.getfixturevalue("local_kafka")
    return broker.bootstrap


@pytest.fixture(scope="session")
def tansu_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap server of a Tansu started for this session, stopped at its end."""
    broker = local_broker("tansu", home=tmp_path_factory.mktemp("tansu"), port=free_port_on_host())
    yield broker.start()
    broker.stop()


@pytest.fixture
def free_port() -> Callable[..., int]:
    """Factory of free ports: ``free_port()``, or ``free_port(span=2)`` for Kafka's pair."""
    return free_port_on_host


@pytest.fixture
def new_topic_name() -> Callable[[str], str]:
    """Factory of unique topic (or consumer group) names: ``new_topic_name("events")``."""

    def make(prefix: str = "test") -> str:
        return f"{prefix}-{uuid.uuid4().hex[:12]}"

    return make
