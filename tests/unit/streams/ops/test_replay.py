"""Replay without a broker: event-log parsing, pacing math, and batching against a fake producer."""

from __future__ import annotations

import asyncio
import gzip
import math
import re
import time
from pathlib import Path
from typing import Any
from unittest.mock import create_autospec

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder

from streams.ops import replay as replay_module
from streams.ops.event_log import event_id, read_events
from streams.ops.replay import (
    MAX_GAP_SECONDS,
    TICK_SECONDS,
    Pacer,
    Pause,
    ReplayStats,
    replay,
    sleep_for,
)
from streams.settings import Settings

EVENT_TYPES = {"view", "click", "search", "add_to_cart", "purchase"}

CSV = """\
ts,user_id,session_id,type,item_id,category,price,query
1700000000.5,u1,s1,view,i42,shoes,,
1700000001,u1,s1,search,,,,"running shoes, red"
1700000002,u2,s2,purchase,i7,,59.9,
1700000003,u2,s2,wishlist,i8,,,
"""

EXPECTED = [
    {"user_id": "u1", "session_id": "s1", "ts": 1700000000.5, "type": "view",
     "item_id": "i42", "category": "shoes"},
    {"user_id": "u1", "session_id": "s1", "ts": 1700000001.0, "type": "search",
     "query": "running shoes, red"},
    {"user_id": "u2", "session_id": "s2", "ts": 1700000002.0, "type": "purchase",
     "item_id": "i7", "price": 59.9},
    # Unknown types are kept: the worker dead-letters them, replay drops nothing.
    {"user_id": "u2", "session_id": "s2", "ts": 1700000003.0, "type": "wishlist",
     "item_id": "i8"},
]  # fmt: skip


def write(path: Path, text: str) -> Path:
    """Write ``text`` to ``path``, gzipped when the name ends in .gz."""
    data = text.encode()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def without_ids(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in event.items() if k != "event_id"} for event in events]


@pytest.mark.parametrize("name", ["events.csv", "events.csv.gz"])
def test_csv_rows_become_events_with_empty_fields_left_out(tmp_path: Path, name: str) -> None:
    events = list(read_events(write(tmp_path / name, CSV)))
    assert without_ids(events) == EXPECTED
    assert [type(e["ts"]) for e in events] == [float] * 4


def test_gzip_is_detected_by_content_not_name(tmp_path: Path) -> None:
    path = tmp_path / "events.data"
    path.write_bytes(gzip.compress(CSV.encode()))
    assert without_ids(list(read_events(path))) == EXPECTED


def test_event_ids_are_uuid5_of_folder_file_name_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "events.csv", CSV)
    ids = [e["event_id"] for e in read_events(path)]
    assert ids == [event_id(f"{tmp_path.name}/events.csv", line) for line in (2, 3, 4, 5)]
    assert len(set(ids)) == 4
    assert ids == [e["event_id"] for e in read_events(path)]  # a second replay, same ids
    (tmp_path / "copy").mkdir()
    copy = write(tmp_path / "copy" / "events.csv", CSV)
    # data sets share file names (train.csv.gz): the folder keeps their ids apart
    assert not set(ids) & {e["event_id"] for e in read_events(copy)}
    other = write(tmp_path / "other.csv", CSV)
    assert not set(ids) & {e["event_id"] for e in read_events(other)}


def test_blank_lines_are_no_events(tmp_path: Path) -> None:
    path = write(tmp_path / "events.csv", CSV.replace("\n1700000002", "\n\n1700000002") + "\n")
    events = list(read_events(path))
    assert without_ids(events) == EXPECTED
    physical_line = event_id(f"{tmp_path.name}/events.csv", 5)
    assert events[2]["event_id"] == physical_line


def test_limit(tmp_path: Path) -> None:
    path = write(tmp_path / "events.csv", CSV)
    assert without_ids(list(read_events(path, limit=2))) == EXPECTED[:2]
    assert list(read_events(path, limit=0)) == []
    with pytest.raises(ValueError, match="limit"):
        read_events(path, limit=-1)


def test_missing_file_fails_before_iterating(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.csv"):
        read_events(tmp_path / "nope.csv")


@pytest.mark.parametrize(
    ("row", "error"),
    [
        ("1700000009,u3,s3,view,i1,,", "expected 8 fields, got 7"),
        ("1700000009,u3,s3,view,i1,,,,", "expected 8 fields, got 9"),
        ("yesterday,u3,s3,view,i1,,,", "ts is not a number: 'yesterday'"),
        (",u3,s3,view,i1,,,", "ts is not a number: ''"),
        ("nan,u3,s3,view,i1,,,", "ts is not finite"),
        ("1700000009,u3,s3,view,i1,,cheap,", "price is not a number: 'cheap'"),
        ("1700000009,u3,s3,view,i1,,inf,", "price is not finite"),
    ],
)
def test_malformed_row_names_file_and_line(tmp_path: Path, row: str, error: str) -> None:
    path = write(tmp_path / "events.csv.gz", CSV + row + "\n")
    events = read_events(path)
    with pytest.raises(ValueError, match=re.escape(f"{path}:6: {error}")):
        list(events)


def test_wrong_header_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "events.csv", CSV.replace("user_id,session_id", "session_id,user_id"))
    with pytest.raises(ValueError, match=re.escape(f"{path}:1: expected the CSV header")):
        list(read_events(path))


def test_empty_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="expected the CSV header"):
        list(read_events(write(tmp_path / "events.csv", "")))


@pytest.mark.parametrize("name", ["events.jsonl", "events.jsonl.gz"])
def test_jsonl_events_pass_through(tmp_path: Path, name: str) -> None:
    given = {"event_id": "e-1", "user_id": 7, "ts": 1.5, "type": "view", "item_id": "i1",
             "dwell_ms": 5300}  # fmt: skip
    bare = {"user_id": "u2", "type": "oops"}
    text = orjson.dumps(given).decode() + "\n\n" + orjson.dumps(bare).decode() + "\n"
    events = list(read_events(write(tmp_path / name, text)))
    assert events == [given, {**bare, "event_id": event_id(f"{tmp_path.name}/{name}", 3)}]


@pytest.mark.parametrize(("line", "error"), [("{not json", "invalid JSON"), ("[1, 2]", "got list")])
def test_malformed_jsonl_line_names_file_and_line(tmp_path: Path, line: str, error: str) -> None:
    path = write(tmp_path / "events.jsonl", '{"user_id": "u1"}\n' + line + "\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}:2: ") + ".*" + re.escape(error)):
        list(read_events(path))


@pytest.mark.parametrize(
    "relative",
    ["retailrocket-sample/events.csv.gz", "yoochoose-100k/train.csv.gz", "diginetica/train.csv.gz"],
)
def test_shared_data_sets_parse(shared_data: Path, relative: str) -> None:
    path = shared_data / relative
    if not path.is_file():
        pytest.skip(f"{path} is absent: the shared data folder (../shared/data) is not here")
    events = list(read_events(path, limit=100))
    assert len(events) == 100
    assert len({e["event_id"] for e in events}) == 100
    for event in events:
        assert event["type"] in EVENT_TYPES
        assert event["user_id"] and event["session_id"] and "item_id" in event
        assert isinstance(event["ts"], float) and math.isfinite(event["ts"])
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)


# Pacing: pure schedule math, no clock, no sleeping.


def test_as_fast_as_possible_is_all_due_at_once() -> None:
    pacer = Pacer()
    assert {pacer.due(ts) for ts in (5.0, 1e9, None)} == {0.0}


def test_rate_spaces_events_evenly_without_drift() -> None:
    pacer = Pacer(rate=500.0)
    dues = [pacer.due(None) for _ in range(1_000_001)]
    assert dues[:3] == [0.0, 0.002, 0.004]
    assert dues[-1] == 2000.0  # count / rate, not a running sum that drifts


def test_speedup_follows_the_log_with_gaps_capped() -> None:
    pacer = Pacer(speedup=60.0)
    stamps = [1000.0, 1060.0, 1030.0, None, 1090.0, 1090.0, 1090.0 + 86_400]
    dues = [pacer.due(ts) for ts in stamps]
    # A minute of log is a second; a late or unknown stamp adds nothing, and
    # the gap after it is measured from the latest stamp (1060, not 1030).
    assert dues[:6] == pytest.approx([0.0, 1.0, 1.0, 1.0, 1.5, 1.5])
    assert dues[6] == pytest.approx(1.5 + MAX_GAP_SECONDS)  # a day's gap: capped


def test_speedup_gap_cap_is_configurable() -> None:
    pacer = Pacer(speedup=1.0, max_gap=0.25)
    assert [pacer.due(ts) for ts in (0.0, 0.1, 10.0)] == pytest.approx([0.0, 0.1, 0.35])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rate": 10.0, "speedup": 2.0},
        {"rate": 0.0},
        {"rate": -1.0},
        {"speedup": math.nan},
        {"speedup": math.inf},
        {"max_gap": 0.0},
    ],
)
def test_pacer_refuses_bad_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"rate|speedup|max_gap"):
        Pacer(**kwargs)


def test_sleep_only_when_a_tick_ahead() -> None:
    assert sleep_for(1.0, 0.0) == 1.0
    assert sleep_for(1.0, 1.0 - TICK_SECONDS / 2) == 0.0
    assert sleep_for(1.0, 3.0) == 0.0  # behind schedule: catch up, never sleep


def simulate(pacer: Pacer, stamps: list[float | None], *, send_cost: float) -> tuple[float, int]:
    """Run the replay loop's pacing on a fake clock: (finish time, number of sleeps)."""
    now, sleeps = 0.0, 0
    for ts in stamps:
        delay = sleep_for(pacer.due(ts), now)
        if delay:
            now += delay
            sleeps += 1
        now += send_cost
    return now, sleeps


def test_rate_pacing_sleeps_per_tick_not_per_event() -> None:
    finish, sleeps = simulate(Pacer(rate=500.0), [None] * 1_000, send_cost=10e-6)
    assert finish == pytest.approx(2.0, abs=0.02)
    # 2 ms between events, 10 ms ticks: about one sleep per five events.
    assert 150 <= sleeps <= 210


def test_rate_pacing_keeps_up_when_sends_are_slow() -> None:
    finish, sleeps = simulate(Pacer(rate=500.0), [None] * 1_000, send_cost=3e-3)
    assert sleeps == 0 and finish == pytest.approx(3.0)  # as fast as it can, no stalls


def test_speedup_pacing_finishes_on_the_sped_up_log_time() -> None:
    stamps: list[float | None] = [float(t) for t in range(0, 3_600, 2)]  # an hour, every 2 s
    finish, _ = simulate(Pacer(speedup=360.0), stamps, send_cost=1e-6)
    assert finish == pytest.approx(3_598 / 360.0, abs=0.02)


# replay() against a fake producer: batching, acknowledgements, cleanup.


class RecordingBatch(BatchBuilder):
    """A real batch that also remembers what was appended."""

    def __init__(self) -> None:
        super().__init__(512 * 1024, 0)  # 0 = no compression
        self.records: list[tuple[bytes | None, bytes]] = []

    def append(self, *, timestamp: Any, key: Any, value: Any, headers: Any = None) -> Any:
        metadata = super().append(timestamp=timestamp, key=key, value=value, headers=headers)
        if metadata is not None:
            self.records.append((key, value))
        return metadata


@pytest.fixture
def producer(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A fake aiokafka producer (the process boundary) with three partitions."""
    fake = create_autospec(AIOKafkaProducer, instance=True, spec_set=True)
    fake.partitions_for.return_value = {0, 1, 2}
    fake.create_batch.side_effect = RecordingBatch

    async def send_batch(batch: RecordingBatch, topic: str, *, partition: int) -> Any:
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    fake.send_batch.side_effect = send_batch
    monkeypatch.setattr(replay_module, "AIOKafkaProducer", lambda **_: fake)
    return fake


def sent_records(producer: Any) -> list[tuple[str, int, bytes | None, dict[str, Any]]]:
    return [
        (call.args[1], call.kwargs["partition"], key, orjson.loads(value))
        for call in producer.send_batch.await_args_list
        for key, value in call.args[0].records
    ]


SETTINGS = Settings(kafka="fake:9092", broker_kind="kafka", events_topic="t.events")


async def test_replay_sends_every_event_keyed_by_user_in_batches(
    tmp_path: Path, producer: Any
) -> None:
    rows = "".join(f"{1000 + i},u{i % 7},s{i % 7},view,i{i},,,\n" for i in range(2_500))
    path = write(tmp_path / "events.csv", CSV.split("\n")[0] + "\n" + rows)
    counts: list[int] = []
    stats = await replay(SETTINGS, path, progress=False, on_sent=counts.append)

    assert stats == ReplayStats(sent=2_500, seconds=stats.seconds, first_ts=1000.0, last_ts=3499.0)
    records = sent_records(producer)
    assert sorted(r[3]["event_id"] for r in records) == sorted(
        e["event_id"] for e in read_events(path)
    )
    partitioner = DefaultPartitioner()
    for topic, partition, key, event in records:
        assert topic == "t.events"
        assert key == event["user_id"].encode()
        assert partition == partitioner(key, [0, 1, 2], [0, 1, 2])
    assert sum(counts) == 2_500 and len(counts) >= 3  # acknowledged chunk by chunk
    assert producer.send_batch.await_count < 30  # a few batches, not one call per event
    producer.stop.assert_awaited_once()


async def test_malformed_row_delivers_what_came_before_then_raises(
    tmp_path: Path, producer: Any
) -> None:
    path = write(tmp_path / "events.csv", CSV + "oops,u9,s9,view,i1,,,\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}:6: ts is not a number")):
        await replay(SETTINGS, path, progress=False)
    assert without_ids([r[3] for r in sent_records(producer)]) == EXPECTED
    producer.stop.assert_awaited_once()


async def test_broker_failure_raises_and_stops_the_producer(tmp_path: Path, producer: Any) -> None:
    async def fail(batch: BatchBuilder, topic: str, *, partition: int) -> Any:
        future = asyncio.get_running_loop().create_future()
        future.set_exception(OSError("broker gone"))
        return future

    producer.send_batch.side_effect = fail
    with pytest.raises(OSError, match="broker gone"):
        await replay(SETTINGS, write(tmp_path / "events.csv", CSV), progress=False)
    producer.stop.assert_awaited_once()


async def test_bad_arguments_fail_before_connecting(tmp_path: Path, producer: Any) -> None:
    path = write(tmp_path / "events.csv", CSV)
    with pytest.raises(ValueError, match="not both"):
        await replay(SETTINGS, path, rate=10.0, speedup=2.0)
    with pytest.raises(FileNotFoundError):
        await replay(SETTINGS, tmp_path / "missing.csv")
    producer.start.assert_not_awaited()


async def test_rate_mode_paces_the_sends(tmp_path: Path, producer: Any) -> None:
    rows = "".join(f"{i},u1,s1,view,i{i},,,\n" for i in range(50))
    path = write(tmp_path / "events.csv", CSV.split("\n")[0] + "\n" + rows)
    stats = await replay(SETTINGS, path, rate=500.0, progress=False)
    assert stats.sent == 50
    assert stats.seconds >= 49 / 500 - TICK_SECONDS


async def test_a_pause_holds_after_its_events_are_acknowledged_then_the_pace_goes_on(
    tmp_path: Path, producer: Any
) -> None:
    rows = "".join(f"{i},u{i % 3},s1,view,i{i},,,\n" for i in range(100))
    path = write(tmp_path / "events.csv", CSV.split("\n")[0] + "\n" + rows)
    pause, counts = Pause(after=40, until=asyncio.Event()), []
    replaying = asyncio.create_task(
        replay(SETTINGS, path, rate=1_000.0, progress=False, on_sent=counts.append, pause=pause)
    )
    await asyncio.sleep(0.3)  # three times what the whole log takes at this rate
    assert sum(counts) == 40 and len(sent_records(producer)) == 40  # held, all acknowledged
    released = time.monotonic()
    pause.until.set()
    stats = await replaying
    assert stats.sent == 100 and [r[3]["item_id"] for r in sent_records(producer)][40] == "i40"
    # The held time is not caught up in a burst: 60 more events at 1,000 a second.
    assert time.monotonic() - released >= 59 / 1_000 - TICK_SECONDS
