"""RecommendationConsumer: one user's partition, the end of the topic, bad records, commits.

kafka-python's consumer (the process boundary) is a spec'd fake reading an
in-memory topic of three partitions; the integration test reads a real one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from unittest.mock import create_autospec

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

import streams.client.consumer as consumer_module
from streams.client import (
    ClientError,
    InvalidRecommendationError,
    RecommendationConsumer,
    partition_for,
)
from streams.settings import Settings

TOPIC = "t.recs"
SETTINGS = Settings(kafka="fake:9092", broker_kind="kafka", recommendations_topic=TOPIC)
PARTITIONS = 3


def rec(user: str, n: int) -> bytes:
    return orjson.dumps(
        {"user_id": user, "event_id": f"e{n}", "ts": 1.0, "context": "browse",
         "items": [{"item_id": "i1", "score": 0.5}], "purchase_intent": 0.1,
         "model_version": "baseline-cooc-1", "latency_ms": 2.0}
    )  # fmt: skip


@dataclass
class FakeTopic:
    """Records per partition, a spec'd KafkaConsumer reading them, and what it committed."""

    consumer: Any
    logs: dict[int, list[tuple[bytes, bytes]]] = field(default_factory=dict)
    positions: dict[TopicPartition, int] = field(default_factory=dict)
    committed: dict[TopicPartition, int] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    def add(self, user: str, value: bytes) -> None:
        self.logs[partition_for(user, PARTITIONS)].append((user.encode(), value))

    def build(self, **options: Any) -> Any:
        self.options = options
        return self.consumer

    def assign(self, tps: list[TopicPartition]) -> None:
        start = self.options["auto_offset_reset"] == "earliest"
        self.positions = {tp: 0 if start else len(self.logs[tp.partition]) for tp in tps}

    def poll(self, *, timeout_ms: float) -> dict[TopicPartition, list[ConsumerRecord]]:
        polled = {}
        for tp, at in self.positions.items():
            batch = self.logs[tp.partition][at : at + 2]  # small fetches: several polls
            self.positions[tp] = at + len(batch)
            polled[tp] = [
                ConsumerRecord(TOPIC, tp.partition, 0, at + n, 0, 0, key, value, [], 0, 0, 0, 0)
                for n, (key, value) in enumerate(batch)
            ]
        return polled

    def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        self.committed.update({tp: meta.offset for tp, meta in offsets.items()})


@pytest.fixture
def topic(monkeypatch: pytest.MonkeyPatch) -> FakeTopic:
    fake = FakeTopic(create_autospec(KafkaConsumer, instance=True, spec_set=True))
    fake.logs = {p: [] for p in range(PARTITIONS)}
    kafka = fake.consumer
    kafka.partitions_for_topic.return_value = set(range(PARTITIONS))
    kafka.assign.side_effect = fake.assign
    kafka.assignment.side_effect = lambda: set(fake.positions)
    kafka.position.side_effect = lambda tp: fake.positions[tp]
    kafka.end_offsets.side_effect = lambda tps: {tp: len(fake.logs[tp.partition]) for tp in tps}
    kafka.poll.side_effect = fake.poll
    kafka.commit.side_effect = fake.commit
    monkeypatch.setattr(consumer_module, "KafkaConsumer", fake.build)
    return fake


def test_it_reads_every_partition_up_to_the_end_in_order_per_user(topic: FakeTopic) -> None:
    for n in range(9):
        topic.add(f"u{n % 3}", rec(f"u{n % 3}", n))
    with RecommendationConsumer(SETTINGS, from_beginning=True, stop_at_end=True) as recs:
        got = [(r.user_id, r.event_id) for r in recs]
    assert sorted(got) == sorted((f"u{n % 3}", f"e{n}") for n in range(9))
    for user in ("u0", "u1", "u2"):
        assert [e for u, e in got if u == user] == [
            f"e{n}" for n in range(9) if f"u{n % 3}" == user
        ]
    assert topic.options["group_id"] is None and not topic.options["enable_auto_commit"]
    topic.consumer.commit.assert_not_called()


def test_a_user_is_read_on_their_partition_only(topic: FakeTopic) -> None:
    users = ["u1", "u2", "u123", "shopper-42"]
    for n in range(12):
        topic.add(users[n % 4], rec(users[n % 4], n))
    with RecommendationConsumer(SETTINGS, user="u1", from_beginning=True, stop_at_end=True) as recs:
        assert [r.event_id for r in recs] == ["e0", "e4", "e8"]
    (assigned,) = topic.consumer.assign.call_args.args
    assert assigned == [TopicPartition(TOPIC, partition_for("u1", PARTITIONS))]


def test_from_now_on_skips_what_was_there(topic: FakeTopic) -> None:
    topic.add("u1", rec("u1", 0))
    with RecommendationConsumer(SETTINGS, stop_at_end=True) as recs:
        topic.add("u1", rec("u1", 1))
        assert [r.event_id for r in recs] == ["e1"]


def test_a_bad_record_raises_where_it_is_and_the_iteration_goes_on(topic: FakeTopic) -> None:
    topic.add("u1", rec("u1", 0))
    topic.add("u1", b'{"user_id": "u1", "items": "none"}')
    topic.add("u1", rec("u1", 2))
    with RecommendationConsumer(SETTINGS, from_beginning=True, stop_at_end=True) as recs:
        first = iter(recs)
        assert next(first).event_id == "e0"
        with pytest.raises(InvalidRecommendationError) as bad:
            next(first)
        assert (bad.value.partition, bad.value.offset) == (partition_for("u1", PARTITIONS), 1)
        assert [r.event_id for r in recs] == ["e2"]


def test_a_group_commits_what_was_handed_out_and_no_further(topic: FakeTopic) -> None:
    for n in range(5):
        topic.add("u1", rec("u1", n))
    recs = RecommendationConsumer(SETTINGS, group="front", user="u1", from_beginning=True)
    taken = [r.event_id for _, r in zip(range(3), recs, strict=False)]
    recs.close()
    recs.close()
    assert taken == ["e0", "e1", "e2"]
    # Polls fetch two records at a time: e3 was fetched but not handed out.
    assert topic.committed == {TopicPartition(TOPIC, partition_for("u1", PARTITIONS)): 3}
    topic.consumer.close.assert_called_once_with(autocommit=False)


def test_a_missing_topic_is_an_error_and_the_consumer_is_closed(topic: FakeTopic) -> None:
    topic.consumer.partitions_for_topic.return_value = set()
    with pytest.raises(ClientError, match="does not exist"):
        RecommendationConsumer(SETTINGS)
    topic.consumer.close.assert_called_once_with(autocommit=False)
