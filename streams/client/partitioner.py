"""The partition of a user's records: the Java client's partitioner for keyed records.

The worker that owns a user's state reads one partition; a user's events and
erasure requests must land there whichever client produced them, or the worker
refuses them (``key_mismatch``, docs/privacy.md). Java's producer, kafka-python's,
aiokafka's and kcat's ``murmur2_random`` all pick ``toPositive(murmur2(key)) % n``.
"""

from __future__ import annotations

from collections.abc import Sequence

from streams.kafka.produce import key_partition


def user_key(user_id: str) -> bytes:
    """The record key of a user's events and requests: the raw user id, UTF-8.

    Examples:
        >>> user_key("zoë")
        b'zo\\xc3\\xab'
    """
    return user_id.encode("utf-8")


def partition_for(user_id: str, partitions: int) -> int:
    """The partition of ``user_id``'s records in a topic of ``partitions`` partitions.

    Examples:
        >>> partition_for("u123", 8)  # as org.apache.kafka's producer picks it
        7

    Raises:
        ValueError: ``partitions`` is not positive.
    """
    if partitions < 1:
        raise ValueError(f"a topic has at least one partition, got {partitions}")
    return key_partition(user_key(user_id), partitions)


class JavaPartitioner:
    """kafka-python's ``partitioner`` argument, choosing as :func:`partition_for` does.

    kafka-python's default already hashes keys with murmur2; naming it here makes the
    choice explicit and the tested function the one that runs.
    """

    def __call__(
        self, key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]
    ) -> int:
        """The partition of ``key`` among ``all_partitions`` (sorted by id).

        Raises:
            ValueError: ``key`` is None: every record of the client is keyed by its user.
        """
        if key is None:
            raise ValueError("records are keyed by the raw user id; this one has no key")
        return all_partitions[key_partition(bytes(key), len(all_partitions))]
