"""A cluster that authenticates its clients: everything built from the settings logs in.

Apache Kafka brokers of their own (state folders and ports apart from the session's
broker), whose only client listener asks for a SASL/PLAIN login, over plain text or
over mutual TLS with certificates of a test CA. With the right password a real
worker (Faust), the topic creation, aiokafka's producer and the client's producer
and consumer (kafka-python) all work; with a wrong one, or an untrusted broker
certificate, they fail within seconds, saying how they tried to connect, instead
of waiting for a broker that will never let them in.
"""

from __future__ import annotations

import asyncio
import io
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.brokers.apache_kafka import KafkaBroker
from streams.brokers.listener import ListenerSecurity
from streams.brokers.probe import free_port as free_port_on_host
from streams.client import EventProducer
from streams.errors import BrokerError
from streams.kafka.admin import ensure_topics
from streams.kafka.produce import produce_records
from streams.kafka.security import client_security
from streams.ops.tail import tail
from streams.settings import Settings
from tests.tls import TlsFiles, write_certificates

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

#: The broker logs in as the first account; the clients use the second.
ACCOUNTS = {"broker": "broker-secret", "shop": "shop-secret"}
#: A refused client must fail well within this many seconds.
FAIL_FAST_SECONDS = 15.0


def _running(home: Path, settings: Settings, security: ListenerSecurity) -> Iterator[KafkaBroker]:
    broker = KafkaBroker(
        home=home, port=free_port_on_host(span=2), cache=settings.home, security=security
    )
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="module")
def sasl_kafka(
    tmp_path_factory: pytest.TempPathFactory, settings: Settings
) -> Iterator[KafkaBroker]:
    """An Apache Kafka whose client listener is SASL_PLAINTEXT, for this module."""
    yield from _running(
        tmp_path_factory.mktemp("sasl-kafka"), settings, ListenerSecurity(sasl_users=ACCOUNTS)
    )


@pytest.fixture(scope="module")
def sasl_ssl_kafka(
    tmp_path_factory: pytest.TempPathFactory, settings: Settings, tls_files: TlsFiles
) -> Iterator[KafkaBroker]:
    """An Apache Kafka whose client listener is SASL_SSL and wants client certificates."""
    security = ListenerSecurity(
        sasl_users=ACCOUNTS, tls_keystore=tls_files.broker_keystore, tls_truststore=tls_files.ca
    )
    yield from _running(tmp_path_factory.mktemp("sasl-ssl-kafka"), settings, security)


@pytest.fixture(params=["sasl_kafka", "sasl_ssl_kafka"])
def secured_kafka(request: pytest.FixtureRequest) -> KafkaBroker:
    """Each of the secured brokers in turn."""
    broker: KafkaBroker = request.getfixturevalue(request.param)
    return broker


def _login(broker: KafkaBroker, tls: TlsFiles, password: str) -> dict[str, Any]:
    """The settings a client of ``broker`` needs, with ``password`` for the account."""
    protocol = broker.security.protocol
    files = {"ssl_cafile": tls.ca, "ssl_certfile": tls.client_cert, "ssl_keyfile": tls.client_key}
    return {
        "security_protocol": protocol,
        "sasl_mechanism": "PLAIN",
        "sasl_username": "shop",
        "sasl_password": password,
        **(files if protocol == "SASL_SSL" else {}),
    }


def _view(i: int, user: str) -> bytes:
    event = {
        "event_id": f"ev-{i}",
        "user_id": user,
        "session_id": f"s-{user}",
        "ts": 1_700_000_000.0 + i,
        "type": "view",
        "item_id": f"item-{i % 3}",
    }
    return orjson.dumps(event)


def test_a_worker_and_the_tools_log_in_and_serve(
    secured_kafka: KafkaBroker,
    tls_files: TlsFiles,
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], subprocess.Popen[bytes]],
) -> None:
    login = _login(secured_kafka, tls_files, "shop-secret")
    settings = make_settings(
        secured_kafka.bootstrap, "kafka", partitions=2, text_search=False, **login
    )
    start_worker(settings)
    events = [(f"u{i % 4}".encode(), _view(i, f"u{i % 4}")) for i in range(12)]
    asyncio.run(  # aiokafka's producer, as replay's, then the client's (kafka-python)
        produce_records(
            settings.bootstrap, settings.events_topic, events[:6], **client_security(settings)
        )
    )
    with EventProducer(settings) as producer:
        for _, value in events[6:]:
            producer.send(orjson.loads(value))
        assert producer.flush().sent == 6
    out = io.StringIO()
    tailed = tail(
        settings, from_beginning=True, limit=len(events), idle_timeout=60, out=out, raw=True
    )
    assert tailed == len(events)
    answered = {orjson.loads(line)["event_id"] for line in out.getvalue().splitlines()}
    assert answered == {f"ev-{i}" for i in range(len(events))}


def test_a_wrong_password_fails_fast_and_says_how_it_connected(
    secured_kafka: KafkaBroker,
    tls_files: TlsFiles,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    login = _login(secured_kafka, tls_files, "wrong")
    settings = Settings(kafka=secured_kafka.bootstrap, broker_kind="kafka", home=tmp_path, **login)
    started = time.monotonic()
    with pytest.raises(BrokerError, match=r"over SASL_\w+ as 'shop' \(PLAIN\)"):
        ensure_topics(settings)
    with pytest.raises(BrokerError, match=r"over SASL_\w+ as 'shop' \(PLAIN\)"):
        tail(settings, limit=1, out=io.StringIO())
    with pytest.raises(BrokerError, match=r"over SASL_\w+ as 'shop' \(PLAIN\)"):
        EventProducer(settings)
    assert time.monotonic() - started < FAIL_FAST_SECONDS
    assert "Authentication failed" in caplog.text  # kafka-python's log names the cause


def test_a_client_without_a_login_is_turned_away(
    secured_kafka: KafkaBroker, tmp_path: Path
) -> None:
    settings = Settings(kafka=secured_kafka.bootstrap, broker_kind="kafka", home=tmp_path)
    started = time.monotonic()
    with pytest.raises(BrokerError, match="over PLAINTEXT"):
        ensure_topics(settings)
    assert time.monotonic() - started < FAIL_FAST_SECONDS


def test_a_broker_certificate_from_another_ca_is_refused(
    sasl_ssl_kafka: KafkaBroker, tls_files: TlsFiles, tmp_path: Path
) -> None:
    other = write_certificates(tmp_path / "other", ca_name="another CA")
    login = _login(sasl_ssl_kafka, tls_files, "shop-secret") | {"ssl_cafile": other.ca}
    settings = Settings(kafka=sasl_ssl_kafka.bootstrap, broker_kind="kafka", home=tmp_path, **login)
    started = time.monotonic()
    with pytest.raises(BrokerError, match="over SASL_SSL"):
        ensure_topics(settings)
    with pytest.raises(BrokerError, match="over SASL_SSL"):
        tail(settings, limit=1, out=io.StringIO())
    assert time.monotonic() - started < FAIL_FAST_SECONDS
