"""Plain record types that cross the boundary between Faust and the pure pipeline."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from streams.pipeline.validation import Rejection

Headers = list[tuple[str, bytes]]


class InputRecord(NamedTuple):
    """One consumed record of ``shop.events``, as raw bytes plus its position.

    A named tuple, not a frozen dataclass: one is made per event, and this is
    about three times cheaper to build.
    """

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


#: Seals a record's (key, value) into one opaque value (``crypto.RecordSealer.seal``).
Sealer = Callable[[bytes | None, bytes | None], bytes]

#: Sends records and waits until the broker has them (``streams.kafka.produce.send_all``).
SendRecords = Callable[[list["OutputRecord"]], Awaitable[None]]


def dead_letter(
    record: InputRecord,
    rejection: Rejection,
    *,
    topic: str,
    seal: Sealer,
    user: bytes | None = None,
) -> OutputRecord:
    """The DLQ copy of a rejected record, nothing dropped and no raw id in the clear.

    The original key and bytes are sealed together into the value (they may hold
    raw user ids, which may appear only in the input and output topics); the
    reason, detail and source position stay readable in the headers, and so does
    ``user``, the pseudonym whose data key sealed it, when it was.
    """
    headers = [
        ("reason", rejection.reason.value.encode()),
        ("detail", rejection.detail.encode("utf-8", "replace")),
        ("source_topic", record.topic.encode()),
        ("source_partition", str(record.partition).encode()),
        ("source_offset", str(record.offset).encode()),
    ]
    if user is not None:
        headers.append(("user", user))
    return OutputRecord(
        topic=topic, key=None, value=seal(record.key, record.value), headers=headers
    )
