"""Broker security settings become each client library's arguments, and a TLS context that works.

The TLS checks are real handshakes against a local TLS server holding a broker
certificate from the test CA (tests/tls.py); the Kafka round trips over SASL are
in tests/integration/test_security.py.
"""

from __future__ import annotations

import inspect
import socket
import ssl
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import faust
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from kafka import KafkaConsumer
from kafka.admin import KafkaAdminClient

from streams.kafka.admin import topic_specs
from streams.kafka.security import client_security, describe, faust_credentials, ssl_context
from streams.settings import Settings
from streams.worker.app import faust_options
from tests.tls import TlsFiles, write_certificates

SASL = {"sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "shop", "sasl_password": "s3cret"}


def _settings(**security: Any) -> Settings:
    return Settings(kafka="127.0.0.1:9092", broker_kind="kafka", **security)


def _tls(files: TlsFiles, protocol: str = "SSL", **more: Any) -> Settings:
    return _settings(
        security_protocol=protocol,
        ssl_cafile=files.ca,
        ssl_certfile=files.client_cert,
        ssl_keyfile=files.client_key,
        **more,
    )


def _comparable(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """Arguments without unset ones, a TLS context replaced by the CAs it trusts."""
    return {
        name: value.get_ca_certs() if isinstance(value, ssl.SSLContext) else value
        for name, value in arguments.items()
        if value is not None
    }


def test_plaintext_adds_nothing() -> None:
    settings = _settings()
    assert client_security(settings) == {"security_protocol": "PLAINTEXT", "ssl_context": None}
    assert faust_credentials(settings) is None
    assert describe(settings) == "127.0.0.1:9092 over PLAINTEXT"


def test_sasl_logs_in_with_the_mechanism_user_and_password() -> None:
    settings = _settings(security_protocol="SASL_PLAINTEXT", **SASL)
    assert client_security(settings) == {
        "security_protocol": "SASL_PLAINTEXT",
        "ssl_context": None,
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "shop",
        "sasl_plain_password": "s3cret",
    }
    assert "s3cret" not in describe(settings) and "'shop' (SCRAM-SHA-512)" in describe(settings)


def test_tls_gets_a_strict_context_with_the_configured_ca(tls_files: TlsFiles) -> None:
    context = client_security(_tls(tls_files))["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    [ca] = context.get_ca_certs()
    assert dict(pair[0] for pair in ca["subject"])["commonName"] == "intentstream test CA"


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"])
def test_faust_connects_as_the_other_clients_do(protocol: str, tls_files: TlsFiles) -> None:
    sasl = SASL if protocol.startswith("SASL") else {}
    settings = (
        _tls(tls_files, protocol, **sasl)
        if protocol.endswith("SSL")
        else _settings(security_protocol=protocol, **sasl)
    )
    app = faust.App("security-test", **faust_options(settings))
    # What Faust's aiokafka driver hands its consumers and producers.
    faust_arguments = credentials_to_aiokafka_auth(app.conf.broker_credentials)
    assert _comparable(faust_arguments) == _comparable(client_security(settings))


async def test_both_client_libraries_take_these_arguments(tls_files: TlsFiles) -> None:
    arguments = client_security(_tls(tls_files, "SASL_SSL", **SASL))
    for client in (KafkaAdminClient, KafkaConsumer):
        assert set(arguments) <= set(client.DEFAULT_CONFIG)
    for aio in (AIOKafkaConsumer, AIOKafkaProducer):
        assert set(arguments) <= set(inspect.signature(aio).parameters)
    # aiokafka checks that protocol, context and login fit together when it is built.
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1", **arguments)
    await producer.stop()


def test_topics_and_faust_use_the_replication_factor() -> None:
    settings = _settings(replication_factor=3)
    assert {spec.replication_factor for spec in topic_specs(settings)} == {3}
    assert faust.App("replicas-test", **faust_options(settings)).conf.topic_replication_factor == 3


def _accept(listener: socket.socket, context: ssl.SSLContext) -> str:
    """Serve one TLS handshake; returns the client certificate's common name."""
    connection, _ = listener.accept()
    with context.wrap_socket(connection, server_side=True) as tls:
        certificate: dict[str, Any] = tls.getpeercert()  # type: ignore[assignment]
        return str(dict(pair[0] for pair in certificate["subject"])["commonName"])


def _handshake(client: ssl.SSLContext, files: TlsFiles) -> str:
    """Connect ``client`` to a one-shot server with the broker's certificate that requires a
    client certificate; returns the name the server saw."""
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=files.ca)
    server.load_cert_chain(files.broker_cert, files.broker_key)
    server.verify_mode = ssl.CERT_REQUIRED
    with socket.create_server(("127.0.0.1", 0)) as listener, ThreadPoolExecutor(1) as pool:
        listener.settimeout(5)
        seen = pool.submit(_accept, listener, server)
        address = listener.getsockname()
        with (
            socket.create_connection(address, timeout=5) as raw,
            client.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            tls.sendall(b"ping")  # TLS 1.3 checks the client certificate after the handshake
        return seen.result(timeout=5)


def test_mutual_tls_verifies_the_broker_and_presents_the_client_certificate(
    tls_files: TlsFiles,
) -> None:
    context = ssl_context(_tls(tls_files))
    assert context is not None
    assert _handshake(context, tls_files) == "intentstream client"


def test_a_broker_signed_by_another_ca_is_refused(tls_files: TlsFiles, tmp_path: Path) -> None:
    other = write_certificates(tmp_path, ca_name="another CA")
    context = ssl_context(_settings(security_protocol="SSL", ssl_cafile=other.ca))
    assert context is not None
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(context, tls_files)
