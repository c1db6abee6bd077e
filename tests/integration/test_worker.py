"""End to end through a real Faust worker process on a real broker.

Apache Kafka (the reference) checks the exact outputs and a restart; Tansu (the
demo default) gets the same flow as a smoke test, restart included, since its
end-offset quirk is exactly what breaks changelog recovery.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections import Counter
from collections.abc import Callable

import orjson
import pytest
from aiokafka.structs import ConsumerRecord

from streams.kafka.consumed import input_records
from streams.kafka.tables import KEY_TABLE, USER_TABLE
from streams.pipeline.build import build_pipeline
from streams.pipeline.crypto import DLQ_PURPOSE, RecordSealer, StateCipher
from streams.pipeline.ledger import LedgerSealer
from streams.pipeline.pseudonyms import Pseudonymizer
from streams.pipeline.state import UserState
from streams.pipeline.working_set import USER_SEALED_DEAD_LETTER
from streams.settings import Settings
from tests.integration.kafka_io import produce

pytestmark = pytest.mark.integration

ReadTopic = Callable[..., list[ConsumerRecord[bytes, bytes]]]
ReadTopics = Callable[..., dict[str, list[ConsumerRecord[bytes, bytes]]]]
StartWorker = Callable[[Settings], subprocess.Popen[bytes]]

VOLATILE = ("ts", "latency_ms")


def _event(
    i: int, user: str, kind: str = "view", item: str | None = None, **extra: object
) -> bytes:
    event: dict[str, object] = {
        "event_id": f"ev-{i}",
        "user_id": user,
        "session_id": f"s-{user}",
        "ts": 1_700_000_000.0 + i,
        "type": kind,
        **extra,
    }
    if kind != "search":
        event["item_id"] = item or f"item-{i % 5}"
    return orjson.dumps(event)


GOOD = [
    (b"u1", _event(0, "u1", item="a")),
    (b"u2", _event(1, "u2", item="a")),
    (b"u1", _event(2, "u1", item="b")),
    (b"u2", _event(3, "u2", "search", query="zapatos rojos")),
    (b"u1", _event(4, "u1", "add_to_cart", item="b")),
    (b"u3", _event(5, "u3", item="c", unknown_field={"kept": True})),
    (b"u1", _event(6, "u1", "purchase", item="b", price=59.9)),
    (b"u2", _event(7, "u2", "click", item="a")),
]
BAD = [
    (b"u9", b'{"event_id": "t1", "user_id": "u9", "ts": 1.0, "ty', "invalid_json"),
    (
        b"u9",
        b'{"event_id": "t2", "user_id": "u9", "ts": "now", "type": "view", "item_id": "i"}',
        "wrong_type",
    ),
    (b"u9", b'{"event_id": "t3", "ts": 1.0, "type": "view", "item_id": "i"}', "missing_field"),
    (
        b"u9",
        b'{"event_id": "t4", "user_id": "u9", "ts": 1.0, "type": "teleport", "item_id": "i"}',
        "unknown_event_type",
    ),
    (b"u9", b'{"event_id": "t5", "user_id": "u9", "pad": "' + b"x" * 200_000 + b'"}', "too_large"),
    (b"u9", b"\xff\xfe\xfd not utf-8 \x80", "not_utf8"),
    (None, b"[1, 2, 3]", "not_object"),
]


def _mixed() -> list[tuple[bytes | None, bytes]]:
    """Good and bad records interleaved, so bad input sits between real work."""
    bad = [(key, value) for key, value, _ in BAD]
    mixed: list[tuple[bytes | None, bytes]] = []
    for i, good in enumerate(GOOD):
        mixed.append(good)
        if i < len(bad):
            mixed.append(bad[i])
    return mixed


def _stable(value: bytes) -> dict[str, object]:
    rec = orjson.loads(value)
    return {k: v for k, v in rec.items() if k not in VOLATILE}


def _changelog_states(states: list, keys: list, master_key: bytes) -> dict[bytes, UserState]:
    """Each user's latest state in the changelogs, opened with the key in their ledger."""
    latest_state = {record.key: record.value for record in states}
    ledgers = LedgerSealer(master_key)
    latest_key = {r.key: ledgers.open(r.key, r.value).wrapped_key or b"" for r in keys}
    cipher = StateCipher(master_key)
    return {
        user: UserState.from_bytes(cipher.open(user, latest_key[user], sealed))
        for user, sealed in latest_state.items()
    }


@pytest.mark.kafka
def test_exact_recommendations_and_dead_letters_on_kafka(
    kafka_bootstrap: str,
    make_settings: Callable[..., Settings],
    start_worker: StartWorker,
    read_topics: ReadTopics,
    pseudonym_key: str,
    master_key: bytes,
) -> None:
    settings = make_settings(kafka_bootstrap, "kafka", partitions=1)
    start_worker(settings)
    asyncio.run(produce(settings.bootstrap, settings.events_topic, _mixed()))
    out = read_topics(
        settings.bootstrap,
        [settings.events_topic, settings.recommendations_topic, settings.dlq_topic],
        count=2 * len(GOOD) + 2 * len(BAD),
    )
    inputs = out[settings.events_topic]

    # The same records through the pure pipeline, in the order the worker saw them.
    expected_pipeline = build_pipeline(
        settings, pseudonymizer=Pseudonymizer(pseudonym_key.encode()), master_key=master_key
    )
    expected = expected_pipeline.process(
        input_records([inputs]),
        read_state=lambda _: None,
        read_key=lambda _: None,
    )
    recs = out[settings.recommendations_topic]
    assert [_stable(m.value) for m in recs] == [
        _stable(r.value or b"") for r in expected.recommendations
    ]
    assert [m.key for m in recs] == [key for key, _ in GOOD]
    assert all(0 <= orjson.loads(m.value)["latency_ms"] < 60_000 for m in recs)
    assert orjson.loads(recs[3].value)["context"] == "search"

    letters = out[settings.dlq_topic]
    position = {m.value: m.offset for m in inputs}
    sealer = RecordSealer(master_key, purpose=DLQ_PURPOSE)
    assert all(m.key is None for m in letters)
    for m, (key, value, _) in zip(letters, BAD, strict=True):
        if m.value[0] == USER_SEALED_DEAD_LETTER:  # names a user: sealed under their key
            named = Pseudonymizer(pseudonym_key.encode()).one(key.decode()).encode()
            assert dict(m.headers)["user"] == named
        else:
            assert sealer.open(m.value) == (key, value)
    for letter, (_, value, reason) in zip(letters, BAD, strict=True):
        assert value not in letter.value  # sealed, not a plain copy
        headers = dict(letter.headers)
        assert headers["reason"].decode() == reason
        assert headers["detail"]
        assert headers["source_topic"].decode() == settings.events_topic
        assert headers["source_partition"] == b"0"
        assert int(headers["source_offset"]) == position[value]


@pytest.fixture
def restart_flow(
    start_worker: StartWorker,
    stop_worker: Callable[[subprocess.Popen[bytes]], int],
    read_topic: ReadTopic,
    read_topics: ReadTopics,
    pseudonym_key: str,
    master_key: bytes,
) -> Callable[[Settings], None]:
    """Events, clean stop, restart, more events: every user's state is whole afterwards."""

    def run(settings: Settings) -> None:
        users = [f"user-{n}" for n in range(6)]
        first = [(u.encode(), _event(i, u, item=f"p{i}")) for i, u in enumerate(users * 3)]
        second = [(u.encode(), _event(100 + i, u, item=f"q{i}")) for i, u in enumerate(users * 2)]
        changelog = f"{settings.app_id}-{USER_TABLE}-changelog"
        key_changelog = f"{settings.app_id}-{KEY_TABLE}-changelog"

        worker = start_worker(settings)
        asyncio.run(produce(settings.bootstrap, settings.events_topic, first))
        read_topic(settings.bootstrap, settings.recommendations_topic, count=len(first), settle=0.5)
        assert stop_worker(worker) == 0

        start_worker(settings)
        asyncio.run(produce(settings.bootstrap, settings.events_topic, second))
        out = read_topics(
            settings.bootstrap,
            [settings.recommendations_topic, changelog, key_changelog],
            count=len(first) + len(second) + 2 * len(users),
        )

        answered = Counter(
            orjson.loads(m.value)["event_id"] for m in out[settings.recommendations_topic]
        )
        assert set(answered) == {orjson.loads(v)["event_id"] for _, v in first + second}
        assert max(answered.values()) == 1, "a clean restart must not answer an event twice"

        pseudonyms = Pseudonymizer(pseudonym_key.encode())
        states = _changelog_states(out[changelog], out[key_changelog], master_key)
        for user in users:
            state = states[pseudonyms.one(user).encode()]
            history = [orjson.loads(v)["item_id"] for k, v in first + second if k == user.encode()]
            assert state.items == history
            assert state.type_counts[0] == len(history)

    return run


@pytest.mark.kafka
def test_restart_keeps_table_state_on_kafka(
    kafka_bootstrap: str,
    make_settings: Callable[..., Settings],
    restart_flow: Callable[[Settings], None],
) -> None:
    restart_flow(make_settings(kafka_bootstrap, "kafka", partitions=4))


@pytest.mark.tansu
def test_smoke_on_tansu(
    tansu_bootstrap: str,
    make_settings: Callable[..., Settings],
    start_worker: StartWorker,
    read_topics: ReadTopics,
) -> None:
    settings = make_settings(tansu_bootstrap, "tansu", partitions=2)
    start_worker(settings)
    asyncio.run(produce(settings.bootstrap, settings.events_topic, _mixed()))
    out = read_topics(
        settings.bootstrap,
        [settings.recommendations_topic, settings.dlq_topic],
        count=len(GOOD) + len(BAD),
    )
    assert sorted(
        orjson.loads(m.value)["event_id"] for m in out[settings.recommendations_topic]
    ) == sorted(orjson.loads(v)["event_id"] for _, v in GOOD)
    assert Counter(dict(m.headers)["reason"].decode() for m in out[settings.dlq_topic]) == Counter(
        reason for _, _, reason in BAD
    )


@pytest.mark.tansu
def test_restart_keeps_table_state_on_tansu_despite_its_end_offset_quirk(
    tansu_bootstrap: str,
    make_settings: Callable[..., Settings],
    restart_flow: Callable[[Settings], None],
) -> None:
    restart_flow(make_settings(tansu_bootstrap, "tansu", partitions=2))
