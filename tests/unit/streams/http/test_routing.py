"""A user's partition is the Java client's, and every partition has one owner."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from kafka.partitioner.default import DefaultPartitioner, murmur2

from streams.http.routing import partition_of, routes_from

#: Kafka's own test vectors for the Java client's ``Utils.murmur2`` (signed 32-bit).
JAVA_MURMUR2 = {
    "21": -973932308,
    "foobar": -790332482,
    "a-little-bit-long-string": -985981536,
    "a-little-bit-longer-string": -1486304829,
    "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    "abc": 479470107,
}


def test_partitions_follow_the_java_clients_murmur2() -> None:
    for key, signed in JAVA_MURMUR2.items():
        assert murmur2(key.encode()) == signed & 0xFFFFFFFF
        for partitions in (1, 2, 3, 8, 12, 100):
            assert partition_of(key, partitions) == (signed & 0x7FFFFFFF) % partitions


@given(st.text(min_size=1, max_size=64), st.integers(min_value=1, max_value=256))
def test_partition_of_is_kafka_pythons_default_partitioner(user_id: str, partitions: int) -> None:
    key = user_id.encode("utf-8")
    everything = list(range(partitions))
    assert partition_of(user_id, partitions) == DefaultPartitioner()(key, everything, everything)


def test_routes_send_each_user_to_the_owner_of_their_partition() -> None:
    distribution = {
        "http://a:1": {"ev": [0, 2], "changelog": [1]},
        "http://b:2": {"ev": [1, 3]},
    }
    routes = routes_from(distribution, topic="ev", partitions=4, own_url="http://a:1")
    assert routes is not None
    for user in ("u1", "u2", "21", "foobar", "abc"):
        owner = "http://a:1" if partition_of(user, 4) in (0, 2) else "http://b:2"
        assert routes.owner(user) == owner
    assert routes.is_own("http://a:1") and not routes.is_own("http://b:2")


def test_routes_are_none_while_a_partition_has_no_owner_or_two() -> None:
    def routes(partitions: int | None, **owned: list[int]) -> object:
        distribution = {f"http://{name}:1": {"ev": ps} for name, ps in owned.items()}
        return routes_from(distribution, topic="ev", partitions=partitions, own_url="")

    assert routes(3, a=[0], b=[1]) is None  # partition 2 unowned
    assert routes(2, a=[0, 1], b=[1]) is None  # two owners during a handover
    assert routes(None, a=[0], b=[2]) is None  # size unknown, and partition 1 unowned
    assert routes(None, a=[0], b=[1]) is not None  # size unknown: every partition is owned
    assert routes(None) is None
    assert routes(2, a=[0], b=[1, 2]) is None  # an owner of a partition the topic lacks
    assert routes(2, a=[0], b=[1]) is not None
