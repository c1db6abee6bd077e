"""The client partitions users' records as the Java client does (Kafka 4.1.1's own values)."""

from __future__ import annotations

import pytest
from kafka.partitioner import DefaultPartitioner, murmur2

from streams.client import partition_for
from streams.client.partitioner import JavaPartitioner, user_key

# Printed by org.apache.kafka:kafka-clients 4.1.1 for each key's UTF-8 bytes:
# Utils.murmur2(key) and BuiltInPartitioner.partitionForKey(key, n) for n = 8, 3, 12.
JAVA = [
    ("u123", -1185241201, 7, 1, 7),
    ("u1", 745337584, 0, 1, 4),
    ("u2", 1598843406, 6, 0, 6),
    ("u3", 1889425894, 6, 1, 10),
    ("shopper-42", 1334341333, 5, 1, 1),
    ("zoë", 1047649164, 4, 0, 0),
    ("ユーザー7", -538569508, 4, 1, 4),
    ("a-little-bit-longer-user-id-0123456789", -136746199, 1, 1, 1),
]


@pytest.mark.parametrize(("user", "java_hash", "p8", "p3", "p12"), JAVA)
def test_partitions_are_the_java_clients(
    user: str, java_hash: int, p8: int, p3: int, p12: int
) -> None:
    assert [partition_for(user, n) for n in (8, 3, 12)] == [p8, p3, p12]
    # Java's int is signed; the partitioner keeps the low 31 bits either way.
    assert murmur2(user_key(user)) & 0x7FFFFFFF == java_hash & 0x7FFFFFFF


@pytest.mark.parametrize(("user", "java_hash", "p8", "p3", "p12"), JAVA)
def test_the_producers_partitioner_and_kafka_pythons_default_agree(
    user: str, java_hash: int, p8: int, p3: int, p12: int
) -> None:
    key = user_key(user)
    for partitions, expected in ((8, p8), (3, p3), (12, p12)):
        ids = list(range(partitions))
        assert JavaPartitioner()(key, ids, ids[:1]) == expected
        assert DefaultPartitioner()(key, ids, ids[:1]) == expected


def test_an_unkeyed_record_or_a_topic_without_partitions_is_refused() -> None:
    with pytest.raises(ValueError, match="keyed"):
        JavaPartitioner()(None, [0, 1], [0, 1])
    with pytest.raises(ValueError, match="at least one partition"):
        partition_for("u1", 0)
