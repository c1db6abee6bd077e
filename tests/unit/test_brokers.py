"""Local broker management without a real broker: configs, pid files, ports, installs."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from unittest import mock

import pytest

from streams.brokers import local_broker
from streams.brokers.apache_kafka import (
    LOG4J2_PROPERTIES,
    KafkaBroker,
    new_cluster_id,
    server_properties,
)
from streams.brokers.maven import install_kafka_jars, kafka_pom
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


def _properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and line[0] != "#")
    return dict(pairs)


def test_server_properties_describe_a_single_kraft_node(tmp_path: Path) -> None:
    props = _properties(server_properties(port=9192, data_dir=tmp_path / "data"))

    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9193"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9192,CONTROLLER://127.0.0.1:9193"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9192"
    assert props["log.dirs"] == str(tmp_path / "data")
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.min.isr"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["auto.create.topics.enable"] == "true"


def test_log4j_config_logs_info_to_stdout() -> None:
    props = _properties(LOG4J2_PROPERTIES.replace(" = ", "="))

    assert props["rootLogger.level"] == "INFO"
    assert props["appender.stdout.type"] == "Console"


def test_pom_uses_the_slf4j_1_binding_kafka_needs() -> None:
    pom = kafka_pom("4.1.1")

    assert "<artifactId>kafka_2.13</artifactId>\n      <version>4.1.1</version>" in pom
    assert "<artifactId>log4j-slf4j-impl</artifactId>" in pom
    assert "log4j-slf4j2-impl" not in pom


def test_cluster_id_is_16_bytes_of_base64url() -> None:
    cluster_id = new_cluster_id()

    assert len(cluster_id) == 22
    assert not cluster_id.startswith("-")
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_local_broker_layout(tmp_path: Path) -> None:
    broker = local_broker("kafka", home=tmp_path / "state", cache=tmp_path / "cache")

    assert isinstance(broker, KafkaBroker)
    assert broker.bootstrap == "127.0.0.1:9192"
    assert broker.state_dir == tmp_path / "state" / "brokers" / "kafka-9192"
    assert broker.libs == tmp_path / "cache" / "kafka" / "4.1.1" / "libs"
    assert local_broker("tansu", home=tmp_path, port=1234).bootstrap == "127.0.0.1:1234"


def test_relative_home_is_made_absolute() -> None:
    # The broker runs with its state folder as cwd, so relative paths would break.
    broker = local_broker("kafka", home=Path("relative-home"))

    assert isinstance(broker, KafkaBroker)
    assert broker.state_dir.is_absolute()
    assert broker.libs.is_absolute()


def test_kafka_refuses_the_last_port() -> None:
    with pytest.raises(ValueError, match="controller"):
        local_broker("kafka", home=Path("/nonexistent"), port=65535)


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


def test_kafka_start_refuses_a_taken_controller_port(tmp_path: Path, listening: int) -> None:
    broker = local_broker("kafka", home=tmp_path, port=listening - 1, cache=tmp_path)

    with pytest.raises(BrokerError, match=f"port {listening} .* already in use"):
        broker.start()
    assert not (tmp_path / "kafka").exists()  # refused before installing anything


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


def test_install_skips_a_completed_install(tmp_path: Path) -> None:
    libs = tmp_path / "libs"
    libs.mkdir()
    (libs / ".complete").write_text("done\n")
    run = mock.create_autospec(subprocess.run, spec_set=True)

    with mock.patch("streams.brokers.maven.subprocess.run", run):
        install_kafka_jars(libs, version="4.1.1")

    run.assert_not_called()


def test_install_redoes_a_half_finished_install(tmp_path: Path) -> None:
    libs = tmp_path / "libs"
    libs.mkdir()
    (libs / "truncated.jar").write_text("")
    done = subprocess.CompletedProcess(args=[], returncode=0, stdout="", stderr="")
    run = mock.create_autospec(subprocess.run, spec_set=True, return_value=done)

    with mock.patch("streams.brokers.maven.subprocess.run", run):
        install_kafka_jars(libs, version="4.1.1")

    argv = run.call_args.args[0]
    assert "dependency:copy-dependencies" in argv
    assert f"-DoutputDirectory={libs}" in argv
    assert not (libs / "truncated.jar").exists()
    assert (libs / ".complete").is_file()
    assert "kafka_2.13" in (tmp_path / "pom.xml").read_text()


def test_failed_mvn_raises_with_its_output(tmp_path: Path) -> None:
    libs = tmp_path / "libs"
    done = subprocess.CompletedProcess(args=[], returncode=1, stdout="", stderr="Could not resolve")
    run = mock.create_autospec(subprocess.run, spec_set=True, return_value=done)

    with (
        mock.patch("streams.brokers.maven.subprocess.run", run),
        pytest.raises(BrokerError, match="Could not resolve"),
    ):
        install_kafka_jars(libs, version="4.1.1")
    assert not (libs / ".complete").exists()
