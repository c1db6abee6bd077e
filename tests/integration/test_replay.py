"""Replay a small log into a fresh topic on Apache Kafka, read it back, and tail it."""

from __future__ import annotations

import asyncio
import gzip
import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from kafka.admin import KafkaAdminClient, NewTopic

from streams.kafka.produce import produce_records
from streams.ops.event_log import read_events
from streams.ops.replay import replay
from streams.ops.tail import tail
from streams.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

_TIMEOUT_S = 30.0
_TYPES = ["view", "view", "click", "add_to_cart", "search", "purchase", "wishlist"]


def _create_topic(bootstrap: str, topic: str, *, partitions: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        admin.close()


@pytest.fixture
def events_file(tmp_path: Path) -> Path:
    """300 events of 23 users: every type, unknown ones, empty fields, quoted queries."""
    lines = ["ts,user_id,session_id,type,item_id,category,price,query"]
    for n in range(300):
        kind = _TYPES[n % len(_TYPES)]
        item = "" if kind == "search" else f"i{n % 41}"
        price = f"{n % 90 + 0.5}" if kind == "purchase" else ""
        query = '"red shoes, size 42"' if kind == "search" else ""
        category = f"c{n % 5}" if n % 3 else ""
        lines.append(
            f"{1.7e9 + n * 1.5},u{n % 23},s{n % 31},{kind},{item},{category},{price},{query}"
        )
    path = tmp_path / "events.csv.gz"
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    return path


async def _read_all(bootstrap: str, topic: str) -> list[Any]:
    """Every record of ``topic`` up to its end offsets (exact on Apache Kafka)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        records: list[Any] = []
        deadline = time.monotonic() + _TIMEOUT_S
        while time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
            assigned = consumer.assignment()
            ends = await consumer.end_offsets(list(assigned))
            positions = {tp: await consumer.position(tp) for tp in assigned}
            if assigned and all(positions[tp] >= ends[tp] for tp in assigned):
                return records
        raise AssertionError(f"{topic} not read to its end within {_TIMEOUT_S} s")
    finally:
        await consumer.stop()


async def test_every_event_arrives_once_keyed_by_user(
    kafka_bootstrap: str, new_topic_name: Callable[[str], str], events_file: Path
) -> None:
    topic = new_topic_name("events")
    _create_topic(kafka_bootstrap, topic, partitions=4)
    settings = Settings(kafka=kafka_bootstrap, broker_kind="kafka", events_topic=topic)

    before_ms = time.time() * 1000
    stats = await replay(settings, events_file, progress=False)
    after_ms = time.time() * 1000
    records = await _read_all(kafka_bootstrap, topic)

    expected = {event["event_id"]: event for event in read_events(events_file)}
    assert stats.sent == len(expected) == 300
    assert (stats.first_ts, stats.last_ts) == (1.7e9, 1.7e9 + 299 * 1.5)
    got = [orjson.loads(record.value) for record in records]
    assert sorted(event["event_id"] for event in got) == sorted(expected)  # each exactly once
    partitions_of_user: dict[str, set[int]] = defaultdict(set)
    for record, event in zip(records, got, strict=True):
        assert event == expected[event["event_id"]]
        assert record.key == event["user_id"].encode()
        # The record stamp is the send time (for latency), not the log's ts.
        assert before_ms - 1 <= record.timestamp <= after_ms + 1
        partitions_of_user[event["user_id"]].add(record.partition)
    assert all(len(parts) == 1 for parts in partitions_of_user.values())
    assert len({record.partition for record in records}) > 1


async def test_rate_and_limit(
    kafka_bootstrap: str, new_topic_name: Callable[[str], str], events_file: Path
) -> None:
    topic = new_topic_name("events")
    _create_topic(kafka_bootstrap, topic, partitions=2)
    settings = Settings(kafka=kafka_bootstrap, broker_kind="kafka", events_topic=topic)

    stats = await replay(settings, events_file, rate=1_000.0, limit=120, progress=False)

    assert stats.sent == 120
    assert stats.seconds >= 0.1  # 119 gaps of 1 ms, minus one 10 ms tick
    records = await _read_all(kafka_bootstrap, topic)
    first = [event["event_id"] for event in read_events(events_file, limit=120)]
    assert sorted(orjson.loads(record.value)["event_id"] for record in records) == sorted(first)


def test_tail_prints_compact_and_raw_lines(
    kafka_bootstrap: str, new_topic_name: Callable[[str], str]
) -> None:
    topic = new_topic_name("recommendations")
    _create_topic(kafka_bootstrap, topic, partitions=1)
    recs = [
        {"user_id": f"u{n}", "event_id": f"e{n}", "ts": 1.0, "context": "browse",
         "items": [{"item_id": f"i{k}", "score": 1.0 - k / 10} for k in range(7)],
         "purchase_intent": 0.25, "model_version": "seq-test", "latency_ms": 3.0 + n}
        for n in range(3)
    ]  # fmt: skip
    records = [(rec["user_id"].encode(), orjson.dumps(rec)) for rec in recs]
    asyncio.run(produce_records(kafka_bootstrap, topic, records))
    settings = Settings(kafka=kafka_bootstrap, broker_kind="kafka", recommendations_topic=topic)

    out = io.StringIO()
    assert tail(settings, from_beginning=True, limit=3, out=out) == 3
    assert out.getvalue().splitlines()[1] == (
        "u1 browse [i0 1.000, i1 0.900, i2 0.800, i3 0.700, i4 0.600] intent=0.250"
        " model=seq-test latency=4.0ms"
    )
    raw = io.StringIO()
    group = new_topic_name("tail")
    assert tail(settings, from_beginning=True, limit=2, out=raw, group=group, raw=True) == 2
    assert [orjson.loads(line) for line in raw.getvalue().splitlines()] == recs[:2]
    # The group goes on after what it printed; to the end of the topic, and no further.
    rest = io.StringIO()
    assert tail(settings, group=group, stop_at_end=True, out=rest, raw=True) == 1
    assert orjson.loads(rest.getvalue()) == recs[2]

    # Without a limit `intentstream tail --follow` runs until Ctrl-C, then exits cleanly.
    env = {**os.environ, "INTENTSTREAM_KAFKA": kafka_bootstrap, "INTENTSTREAM_BROKER_KIND": "kafka",
           "INTENTSTREAM_RECOMMENDATIONS_TOPIC": topic}  # fmt: skip
    command = [sys.executable, "-m", "streams.ops.cli", "tail", "--follow", "--from-beginning"]
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) as follow:
        assert follow.stdout is not None
        watchdog = threading.Timer(2 * _TIMEOUT_S, follow.kill)  # never a hung test
        watchdog.start()
        try:
            lines = [follow.stdout.readline() for _ in range(3)]  # blocks until each is printed
            follow.send_signal(signal.SIGINT)
            assert follow.wait(timeout=_TIMEOUT_S) == 0
        finally:
            watchdog.cancel()
            follow.kill()
    assert [line.split()[0] for line in lines] == ["u0", "u1", "u2"]
