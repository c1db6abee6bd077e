"""``intentstream`` as a real process: a broker it cannot reach is one line on stderr."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A local port that refuses connections: bound (never listening) until the test ends."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield int(held.getsockname()[1])


def test_an_unreachable_broker_is_one_line_naming_the_flag_and_variable(
    closed_port: int, tmp_path: Path
) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("INTENTSTREAM_")}
    environment["INTENTSTREAM_HOME"] = str(tmp_path)
    address = f"127.0.0.1:{closed_port}"
    # One client library each: kafka-python (topics), the client (tail), aiokafka (dlq).
    commands = [["--bootstrap-server", address, "topics"], ["tail", "--bootstrap", address]]
    commands.append(["--bootstrap-server", address, "dlq"])
    running = [
        subprocess.Popen(
            [sys.executable, "-m", "streams.ops.cli", *argv],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for argv in commands
    ]
    for process in running:
        out, err = process.communicate(timeout=60)
        assert (process.returncode, out) == (2, "")
        assert err.splitlines() == [
            f"intentstream: error: cannot reach Kafka at {address}: set --bootstrap-server or "
            "INTENTSTREAM_KAFKA to a running broker"
        ]
