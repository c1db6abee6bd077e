"""The demo's local broker: ``--port``, the default port, or a free one when it is taken."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest

from streams.ops.demo import _local_broker
from streams.settings import DEFAULT_PORTS, Settings


def test_the_demo_broker_moves_off_a_port_another_process_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(home=tmp_path, broker_kind="tansu")
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]
        monkeypatch.setitem(DEFAULT_PORTS, "tansu", taken)
        with caplog.at_level(logging.WARNING):
            moved = _local_broker(settings, None)
        assert moved.bootstrap != f"127.0.0.1:{taken}"
        assert f"port {taken} is taken by another process" in caplog.text
        assert moved.bootstrap.rpartition(":")[2] in caplog.text
        # --port is taken as given (the broker's start says when it is taken).
        assert _local_broker(settings, 19_876).bootstrap == "127.0.0.1:19876"
    # Free again: the default port.
    assert _local_broker(settings, None).bootstrap == f"127.0.0.1:{taken}"
