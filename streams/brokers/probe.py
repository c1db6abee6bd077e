"""Checks that a port is free, and that a broker behind a port really speaks Kafka.

An open TCP port is not enough: Kafka opens its listener before it can serve
metadata, and a stale process may hold the port. Readiness therefore also needs
a metadata round trip through a real client.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any

from kafka import KafkaConsumer
from kafka.errors import KafkaError

from streams.errors import BrokerError

log = logging.getLogger(__name__)

_HOST = "127.0.0.1"
_POLL_INTERVAL_S = 0.2
_PROBE_TIMEOUT_MS = 5_000


def port_in_use(port: int) -> bool:
    """Whether something already listens on ``127.0.0.1:port`` (so a broker could not bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Servers set SO_REUSEADDR, so connections lingering in TIME_WAIT don't block them.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((_HOST, port))
        except OSError:
            return True
    return False


def port_answers(port: int, *, timeout: float = 1.0) -> bool:
    """Whether a TCP connection to ``127.0.0.1:port`` succeeds."""
    try:
        with socket.create_connection((_HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def fetch_metadata(bootstrap: str, **security: Any) -> set[str]:
    """Fetch the topic list from ``bootstrap``: one real Kafka metadata round trip.

    Uses a consumer rather than ``KafkaAdminClient.list_topics``: kafka-python
    2.3.3's admin client fails to parse Tansu's metadata (unknown ACL operation 14).

    Args:
        bootstrap: ``host:port`` of the broker.
        security: kafka-python's ``security_protocol``, ``sasl_*`` and ``ssl_*``
            arguments, for a listener that authenticates its clients.

    Raises:
        KafkaError: The broker did not answer in time or answered with an error.
    """
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id="intentstream-probe",
        enable_auto_commit=False,
        request_timeout_ms=_PROBE_TIMEOUT_MS,
        api_version_auto_timeout_ms=_PROBE_TIMEOUT_MS,
        **security,
    )
    try:
        return set(consumer.topics())
    finally:
        consumer.close()


def wait_ready(
    port: int,
    *,
    timeout: float,
    alive: Callable[[], bool],
    security: Mapping[str, Any] | None = None,
) -> None:
    """Block until the broker on ``port`` serves metadata.

    Args:
        port: Its listener port on 127.0.0.1.
        timeout: Seconds to wait in all.
        alive: Says whether its process still runs, so a crash fails fast.
        security: kafka-python arguments the listener needs (:func:`fetch_metadata`).

    Raises:
        BrokerError: The process died, or the broker was not ready within ``timeout``.
    """
    deadline = time.monotonic() + timeout
    last_error = "port closed"
    while time.monotonic() < deadline:
        if not alive():
            raise BrokerError(f"the broker process exited during startup ({last_error})")
        if port_answers(port):
            try:
                fetch_metadata(f"{_HOST}:{port}", **(security or {}))
            except KafkaError as exc:
                last_error = f"metadata request failed: {exc!r}"
                log.debug("broker on port %d not ready yet: %s", port, last_error)
            else:
                return
        time.sleep(_POLL_INTERVAL_S)
    raise BrokerError(
        f"the broker on {_HOST}:{port} was not ready after {timeout:.0f} s ({last_error})"
    )


def free_port(*, span: int = 1) -> int:
    """A port ``p`` on 127.0.0.1 where ``p .. p + span - 1`` are all free right now.

    Apache Kafka takes two: its client port and the controller port after it.
    """
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind((_HOST, 0))
            port: int = sock.getsockname()[1]
        if port + span <= 65536 and not any(port_in_use(port + i) for i in range(1, span)):
            return port
    raise RuntimeError(f"found no {span} consecutive free ports")
