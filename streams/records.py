"""Plain record types that cross the boundary between Faust and the pure pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field

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
