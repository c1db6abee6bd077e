"""Broker security (TLS, SASL) from the settings, in the form each Kafka client library takes.

Three libraries talk to the brokers: Faust (the worker's app), aiokafka (feeds,
the learner, replay, tail) and kafka-python (topic creation). Each spells the
same connection settings differently; deriving all three here keeps a secured
cluster from being reached securely by some clients and not others
(docs/operating.md#securing-a-cluster). Every client is built with one of these.
"""

from __future__ import annotations

import ssl
from typing import Any

import faust
from aiokafka.helpers import create_ssl_context
from faust.types.auth import CredentialsT

from streams.settings import Settings

TLS_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})
SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context every library uses, or ``None`` when the protocol has no TLS.

    One context for all three, so they verify alike: Python's defaults (TLS 1.2 or
    newer, the broker's certificate and host name checked) against ``ssl_cafile`` or
    the system's CAs, with the client certificate for mutual TLS if set.

    Raises:
        OSError: A configured certificate or key file cannot be read.
        ssl.SSLError: It is not valid PEM, or the key does not match the certificate.
    """
    if settings.security_protocol not in TLS_PROTOCOLS:
        return None
    context: ssl.SSLContext = create_ssl_context(
        cafile=settings.ssl_cafile, certfile=settings.ssl_certfile, keyfile=settings.ssl_keyfile
    )
    return context


def _sasl_login(settings: Settings) -> dict[str, Any]:
    """The SASL arguments of both client libraries (SCRAM, too, takes ``sasl_plain_*``)."""
    if settings.security_protocol not in SASL_PROTOCOLS or settings.sasl_password is None:
        return {}
    return {
        "sasl_mechanism": settings.sasl_mechanism,
        "sasl_plain_username": settings.sasl_username,
        "sasl_plain_password": settings.sasl_password.get_secret_value(),
    }


def client_security(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for aiokafka's and kafka-python's clients alike.

    kafka-python is aiokafka's model and both name these arguments the same. Both
    get the shared :func:`ssl_context`, not kafka-python its ``ssl_cafile`` and
    friends: from those it would build its own context with the deprecated
    ``ssl.PROTOCOL_TLS`` and no minimum TLS version.
    """
    return {
        "security_protocol": settings.security_protocol,
        "ssl_context": ssl_context(settings),
        **_sasl_login(settings),
    }


def faust_credentials(settings: Settings) -> CredentialsT | None:
    """Faust's ``broker_credentials``: SASL (over TLS for SASL_SSL), TLS alone, or none."""
    context = ssl_context(settings)
    login = _sasl_login(settings)
    if login:
        return faust.SASLCredentials(
            username=login["sasl_plain_username"],
            password=login["sasl_plain_password"],
            ssl_context=context,
            mechanism=settings.sasl_mechanism,
        )
    return faust.SSLCredentials(context) if context is not None else None


def describe(settings: Settings) -> str:
    """How clients connect, for errors and logs; never the password.

    Examples:
        >>> describe(Settings(kafka="k:9092"))
        'k:9092 over PLAINTEXT'
    """
    login = f" as {settings.sasl_username!r} ({settings.sasl_mechanism})"
    sasl = login if settings.security_protocol in SASL_PROTOCOLS else ""
    return f"{settings.bootstrap} over {settings.security_protocol}{sasl}"
