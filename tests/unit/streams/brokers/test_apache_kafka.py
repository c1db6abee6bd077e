"""Apache Kafka as a local broker, without starting one: its config, layout and port checks."""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.brokers import local_broker
from streams.brokers.apache_kafka import (
    LOG4J2_PROPERTIES,
    KafkaBroker,
    new_cluster_id,
    server_properties,
)
from streams.brokers.listener import ListenerSecurity
from streams.errors import BrokerError

HOST = "127.0.0.1"


@pytest.fixture
def port_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """Two sockets bound to consecutive ports ``p`` and ``p + 1`` of 127.0.0.1, held by this test.

    Both are bound here, so neither port is merely assumed free (a port next to a free
    one may well be taken); the test releases or listens on them as it needs.
    """
    for _ in range(100):
        first = socket.socket()
        first.bind((HOST, 0))
        second = socket.socket()
        try:
            second.bind((HOST, first.getsockname()[1] + 1))
        except (OSError, OverflowError):  # taken, or p was the last port
            first.close()
            second.close()
            continue
        with first, second:
            yield first, second
        return
    raise RuntimeError("found no two consecutive free ports")


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


def test_kafka_start_refuses_a_taken_controller_port(
    tmp_path: Path, port_pair: tuple[socket.socket, socket.socket]
) -> None:
    client, controller = port_pair
    controller.listen()  # something else serves on the controller port (p + 1)
    port = client.getsockname()[1]
    broker = local_broker("kafka", home=tmp_path, port=port, cache=tmp_path)
    client.close()  # the client port is held until now, so only the controller port is taken

    with pytest.raises(BrokerError, match=f"port {port + 1} .* already in use"):
        broker.start()
    assert not (tmp_path / "kafka").exists()  # refused before installing anything


def test_a_secured_listener_asks_clients_for_a_login_and_a_certificate(tmp_path: Path) -> None:
    tls = {"tls_keystore": tmp_path / "broker.pem", "tls_truststore": tmp_path / "ca.pem"}
    security = ListenerSecurity(sasl_users={"broker": "b-pw", "shop": "s-pw"}, **tls)
    props = _properties(server_properties(port=9192, data_dir=tmp_path, security=security))

    assert props["listeners"] == "SASL_SSL://127.0.0.1:9192,CONTROLLER://127.0.0.1:9193"
    assert props["listener.security.protocol.map"] == "SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT"
    assert props["inter.broker.listener.name"] == "SASL_SSL"
    login = props["listener.name.sasl_ssl.plain.sasl.jaas.config"]
    assert 'username="broker" password="b-pw"' in login and 'user_shop="s-pw"' in login
    assert props["ssl.client.auth"] == "required"
    assert props["ssl.keystore.location"] == str(tmp_path / "broker.pem")
    assert ListenerSecurity(sasl_users={"shop": "pw"}).protocol == "SASL_PLAINTEXT"
    assert ListenerSecurity(**tls).protocol == "SSL"
    with pytest.raises(ValueError, match="go together"):
        ListenerSecurity(tls_keystore=tmp_path / "broker.pem")
