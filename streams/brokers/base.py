"""The contract every local broker meets, so the CLI and tests treat Kafka and Tansu alike."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class BrokerStatus:
    """One local broker as ``intentstream broker status`` reports it.

    Attributes:
        kind: ``"kafka"`` or ``"tansu"``.
        running: Whether its process is alive (it may still be starting up).
        pid: Its process id, ``None`` when not running.
        bootstrap: The address clients connect to, ``127.0.0.1:PORT``.
        log_file: Where its stdout and stderr go.
    """

    kind: str
    running: bool
    pid: int | None
    bootstrap: str
    log_file: Path


class LocalBroker(Protocol):
    """A broker on 127.0.0.1 that intentstream installs, starts and stops itself."""

    kind: str
    bootstrap: str

    def install(self) -> None:
        """Fetch and prepare everything it needs; cheap when already done."""
        ...

    def start(self, *, timeout: float | None = None) -> str:
        """Start it (installing first if needed) and wait until clients get metadata.

        A no-op when it already runs. Returns the bootstrap address.
        """
        ...

    def stop(self, *, timeout: float = 30.0) -> bool:
        """Stop it; ``True`` if a running broker was stopped."""
        ...

    def status(self) -> BrokerStatus:
        """Whether it runs, under which pid, and where it logs."""
        ...
