"""How the client's producers and consumers reach the cluster, from the settings.

The client runs on kafka-python (synchronous, its I/O on a thread of its own);
``intentstream replay`` runs on aiokafka. Both take the same producer arguments,
so the delivery guarantees and the TLS/SASL login (``streams.kafka.security``)
are set in one place for both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from kafka.errors import KafkaError

from streams.errors import BrokerError
from streams.kafka.admin import admin_client
from streams.kafka.security import client_security, describe
from streams.settings import Settings

T = TypeVar("T")


def producer_options(settings: Settings) -> dict[str, Any]:
    """Arguments of aiokafka's and kafka-python's producers alike: address, acks, login.

    Every in-sync replica acknowledges each record, and on Apache Kafka a retried
    batch is not written twice (idempotence); Tansu refuses idempotent producers.
    """
    return {
        "bootstrap_servers": settings.bootstrap,
        "acks": "all",
        "enable_idempotence": settings.broker_kind == "kafka",
        **client_security(settings),
    }


def connect(settings: Settings, what: str, make: Callable[[], T]) -> T:
    """``make()`` a kafka-python client, once the cluster has let an admin client in.

    kafka-python's producer and consumer are built before they log in, and retry a
    refused login for ever (the consumer's first metadata request never returns);
    its admin client logs in when it is built, and fails at once.

    Raises:
        BrokerError: It could not connect, the certificate files could not be read,
            or the TLS or SASL handshake failed; the message says how it connected.
    """
    with admin_client(settings):
        pass
    try:
        return make()
    except (KafkaError, OSError) as exc:  # ssl.SSLError is an OSError
        raise BrokerError(
            f"the {what} cannot connect to {describe(settings)} ({type(exc).__name__}: {exc}); "
            "check the address, security_protocol and the ssl_*/sasl_* settings"
        ) from exc
