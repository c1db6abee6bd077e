"""Shared fixtures: real brokers for the integration tests, fresh topic names, the repository
and its shared data folder, and tiny checkpoints.

The brokers start once per session on free ports, with their state in a
temporary folder; the Kafka jars come from the user's cache (``Settings.home``)
so only the first run ever downloads them. A broker that will not start fails
the tests that need it; nothing is skipped.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import settings as hypothesis_settings

from model.checkpoint import save_checkpoint
from model.config import ScorerConfig
from model.scorer import SequenceScorer
from model.vocab import ItemVocab
from streams.brokers import LocalBroker, local_broker
from streams.brokers.probe import free_port as free_port_on_host
from streams.settings import Settings
from tests.tls import TlsFiles, write_certificates

#: The items of :func:`tiny_checkpoint` unless a test names its own.
TINY_ITEMS = ("a", "b", "c", "d", "e")

# CI (`CI=true`) runs the property tests derandomized: the same examples every run, so
# a result there is reproducible; local runs keep drawing new examples and find new bugs.
hypothesis_settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")


@pytest.fixture(autouse=True)
def logger_levels() -> Iterator[None]:
    """Each test starts with the logger levels the session had.

    ``intentstream`` run in process (``main([...])``) quiets the Kafka client
    loggers for good, as a command should; without this a later test could no
    longer see what the client logs (``caplog``).
    """
    loggers = [logging.getLogger(), *map(logging.getLogger, logging.root.manager.loggerDict)]
    levels = {logger: logger.level for logger in loggers}
    yield
    for logger, level in levels.items():
        logger.setLevel(level)


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


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository's root folder (where ``pyproject.toml`` is)."""
    return Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data(repo_root: Path) -> Path:
    """The shared data folder, ``../shared/data`` beside the repository; it may be absent.

    The data are never committed: a test that needs a file there skips, saying which
    one is missing, when it is not.
    """
    return repo_root.parent / "shared" / "data"


@pytest.fixture
def tiny_checkpoint() -> Callable[..., Path]:
    """Factory of tiny scorer checkpoints, a run folder as ``intentstream train`` leaves it.

    ``tiny_checkpoint(run, seed=0, items=TINY_ITEMS, meta=None)`` writes epoch 1
    (``epoch-0001`` and ``LATEST``) of a 16-wide, 2-head scorer over ``items``, its
    weights drawn from ``torch.manual_seed(seed)``, and returns ``run``. It loads with
    ``load_checkpoint(run)`` and publishes into a model store.
    """

    def make(
        run: Path,
        *,
        seed: int = 0,
        items: Sequence[str] = TINY_ITEMS,
        meta: dict[str, Any] | None = None,
    ) -> Path:
        torch.manual_seed(seed)
        model = SequenceScorer(
            ScorerConfig(n_items=len(items) + 1, d_model=16, n_heads=2, max_len=8)
        )
        save_checkpoint(
            run,
            epoch=1,
            model=model,
            optimizer=torch.optim.Adam(model.parameters()),
            vocab=ItemVocab.build([list(items)]),
            meta=meta or {},
        )
        return run

    return make


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """PEM files of a fresh test CA, a broker certificate (127.0.0.1, localhost) and a client's."""
    return write_certificates(tmp_path_factory.mktemp("tls"))
