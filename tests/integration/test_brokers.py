"""Produce and consume through real local brokers started by the session fixtures."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from kafka import KafkaConsumer, KafkaProducer

from streams.brokers import LocalBroker
from streams.brokers.probe import port_answers

pytestmark = pytest.mark.integration

_TIMEOUT_S = 30.0


def _produce(bootstrap: str, topic: str, *, key: bytes, value: bytes) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    try:
        producer.send(topic, key=key, value=value).get(timeout=_TIMEOUT_S)
    finally:
        producer.close()


def _consume_one(bootstrap: str, topic: str, *, group: str) -> tuple[bytes, bytes]:
    """The first record of ``topic``, read by a fresh consumer group."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        # Tansu holds a group's first join for about half the session timeout;
        # 6 s is the shortest Kafka allows (group.min.session.timeout.ms).
        session_timeout_ms=6_000,
    )
    try:
        deadline = time.monotonic() + _TIMEOUT_S
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                return records[0].key, records[0].value
    finally:
        consumer.close()
    raise AssertionError(f"no record arrived on {topic} within {_TIMEOUT_S} s")


def _round_trip(bootstrap: str, new_name: Callable[[str], str]) -> None:
    topic = new_name("round-trip")
    _produce(bootstrap, topic, key=b"user-1", value=b'{"item": 42}')
    assert _consume_one(bootstrap, topic, group=new_name("group")) == (b"user-1", b'{"item": 42}')


@pytest.mark.kafka
def test_kafka_round_trip(kafka_bootstrap: str, new_topic_name: Callable[[str], str]) -> None:
    _round_trip(kafka_bootstrap, new_topic_name)


@pytest.mark.tansu
def test_tansu_round_trip(tansu_bootstrap: str, new_topic_name: Callable[[str], str]) -> None:
    _round_trip(tansu_bootstrap, new_topic_name)


@pytest.mark.kafka
def test_kafka_keeps_records_across_restart(
    local_kafka: LocalBroker, new_topic_name: Callable[[str], str]
) -> None:
    topic = new_topic_name("persist")
    _produce(local_kafka.bootstrap, topic, key=b"k", value=b"survives")

    assert local_kafka.stop()
    assert not port_answers(int(local_kafka.bootstrap.rpartition(":")[2]))
    assert local_kafka.start() == local_kafka.bootstrap

    group = new_topic_name("group")
    assert _consume_one(local_kafka.bootstrap, topic, group=group) == (b"k", b"survives")


@pytest.mark.kafka
def test_kafka_start_when_running_is_a_no_op(local_kafka: LocalBroker) -> None:
    pid = local_kafka.status().pid

    assert local_kafka.start(timeout=5) == local_kafka.bootstrap
    assert local_kafka.status().pid == pid is not None
