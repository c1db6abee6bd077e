"""Fetched aiokafka records as the pipeline's plain :class:`InputRecord`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from aiokafka import ConsumerRecord

from streams.pipeline.records import InputRecord


def input_records(batches: Iterable[Sequence[ConsumerRecord[bytes, bytes]]]) -> list[InputRecord]:
    """The plain records of fetched batches (e.g. ``getmany(...).values()``), in fetch order."""
    return [
        InputRecord(r.key, r.value, r.topic, r.partition, r.offset, r.timestamp / 1000.0)
        for batch in batches
        for r in batch
    ]
