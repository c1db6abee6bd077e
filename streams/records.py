"""Plain record types that cross the boundary between Faust and the pure pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field

from streams.validation import Rejection

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class InputRecord:
    """One consumed record of ``shop.events``, as raw bytes plus its position."""

    key: bytes | None
    value: bytes | None
    topic: str
    partition: int
    offset: int
    timestamp: float  # Kafka record timestamp, epoch seconds


@dataclass(frozen=True, slots=True)
class OutputRecord:
    """One record to produce; ``partition=None`` lets the partitioner choose."""

    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None = None
    headers: Headers = field(default_factory=list)


def dead_letter(record: InputRecord, rejection: Rejection, *, topic: str) -> OutputRecord:
    """The DLQ copy of a rejected record: original key and bytes, reason and position in headers."""
    headers = [
        ("reason", rejection.reason.value.encode()),
        ("detail", rejection.detail.encode("utf-8", "replace")),
        ("source_topic", record.topic.encode()),
        ("source_partition", str(record.partition).encode()),
        ("source_offset", str(record.offset).encode()),
    ]
    return OutputRecord(topic=topic, key=record.key, value=record.value, headers=headers)
