"""A local broker's process without a real broker: pid files, ports in use, start, stop."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from streams.brokers import local_broker
from streams.brokers.process import BrokerProcess
from streams.errors import BrokerError

FreePort = Callable[..., int]
needs_procfs = pytest.mark.skipif(not Path("/proc/self/cwd").exists(), reason="needs /proc")


class ScriptBroker(BrokerProcess):
    """A stand-in "broker" that runs a shell script: process handling without Kafka."""

    kind = "script"
    start_timeout = 5.0

    def __init__(self, *, home: Path, port: int, script: str) -> None:
        super().__init__(home=home, port=port)
        self.script = script

    def install(self) -> None:
        """Nothing to install."""

    def _command(self) -> list[str]:
        return ["/bin/sh", "-c", self.script]


@pytest.fixture
def listening() -> Iterator[int]:
    """A port that something else already listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _exited(pid: int) -> bool:
    """Whether ``pid`` is gone or a zombie (this sandbox's init may not reap orphans)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_stale_pid_file_is_removed(tmp_path: Path, free_port: FreePort) -> None:
    broker = ScriptBroker(home=tmp_path, port=free_port(), script="true")
    dead = subprocess.Popen(["true"])
    dead.wait()
    broker.state_dir.mkdir(parents=True)
    broker.pid_file.write_text(f"{dead.pid}\n")

    status = broker.status()

    assert (status.running, status.pid) == (False, None)
    assert not broker.pid_file.exists()


@needs_procfs
def test_pid_of_an_unrelated_process_is_stale_and_never_signalled(
    tmp_path: Path, free_port: FreePort
) -> None:
    broker = ScriptBroker(home=tmp_path, port=free_port(), script="true")
    broker.state_dir.mkdir(parents=True)
    broker.pid_file.write_text(f"{os.getpid()}\n")  # alive, but not running in state_dir

    assert broker.stop() is False
    assert not broker.pid_file.exists()


def test_start_refuses_a_port_in_use(tmp_path: Path, listening: int) -> None:
    broker = local_broker("tansu", home=tmp_path, port=listening)

    with pytest.raises(BrokerError, match=f"port {listening} .* already in use"):
        broker.start()
    assert not broker.status().running


def test_broker_dying_at_startup_fails_with_its_log(tmp_path: Path, free_port: FreePort) -> None:
    broker = ScriptBroker(home=tmp_path, port=free_port(), script="echo no-such-config; exit 3")

    with pytest.raises(BrokerError, match="exited during startup") as failure:
        broker.start()
    assert "no-such-config" in str(failure.value)
    assert not broker.pid_file.exists()


@needs_procfs
def test_broker_never_ready_is_killed_after_the_timeout(
    tmp_path: Path, free_port: FreePort
) -> None:
    broker = ScriptBroker(home=tmp_path, port=free_port(), script="echo $$; exec sleep 60")

    with pytest.raises(BrokerError, match="not ready after"):
        broker.start(timeout=0.5)
    pid = int(broker.log_file.read_text().split()[0])
    assert _exited(pid)
    assert not broker.pid_file.exists()


@needs_procfs
def test_stop_terminates_a_detached_broker(tmp_path: Path, free_port: FreePort) -> None:
    broker = ScriptBroker(home=tmp_path, port=free_port(), script="exec sleep 60")
    pid = broker._spawn()
    assert broker.status().pid == pid

    assert broker.stop(timeout=5) is True
    assert _exited(pid)
    assert not broker.status().running
    assert broker.stop() is False
