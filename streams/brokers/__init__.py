"""Local brokers that intentstream installs, starts and stops itself.

Two kinds, each on 127.0.0.1 with its own state folder ``<home>/brokers/<kind>-<port>``:

- ``kafka``: Apache Kafka 4.1 in KRaft mode, the reference; data persists.
- ``tansu``: Tansu, starts instantly; in memory, so a restart loses everything.

Examples:
    >>> from pathlib import Path
    >>> broker = local_broker("kafka", home=Path("/tmp/intentstream"))
    >>> broker.bootstrap
    '127.0.0.1:9192'
"""

from __future__ import annotations

from pathlib import Path

from streams.brokers.apache_kafka import KafkaBroker
from streams.brokers.base import BrokerStatus, LocalBroker
from streams.brokers.tansu import TansuBroker
from streams.settings import DEFAULT_PORTS, BrokerKind

__all__ = ["BrokerKind", "BrokerStatus", "LocalBroker", "local_broker"]


def local_broker(
    kind: BrokerKind, *, home: Path, port: int | None = None, cache: Path | None = None
) -> LocalBroker:
    """The local broker of ``kind`` on ``port``; creating it touches nothing on disk.

    Args:
        kind: ``"kafka"`` or ``"tansu"``.
        home: intentstream's state folder (``Settings.home``).
        port: Client port; ``None`` = ``DEFAULT_PORTS[kind]``. Kafka also takes ``port + 1``.
        cache: Where installs (the Kafka jars) go; ``None`` = ``home``. Lets tests keep
            broker state in a temporary home yet reuse the user's jars.

    Returns:
        A broker handle; call :meth:`LocalBroker.start` to run it.

    Raises:
        ValueError: Unknown ``kind`` or a port out of range.
    """
    if kind not in DEFAULT_PORTS:
        raise ValueError(f"unknown broker kind {kind!r}; expected 'kafka' or 'tansu'")
    chosen = DEFAULT_PORTS[kind] if port is None else port
    if kind == "kafka":
        return KafkaBroker(home=home, port=chosen, cache=cache)
    return TansuBroker(home=home, port=chosen)
