"""Erasure end to end on Apache Kafka: state deleted, key shredded, audited, fresh restart.

After an erasure request no record left in any topic outside the raw-id topics
(events, recommendations, privacy requests and audit) opens for that user:
their old sealed states stay in the ``user_state`` changelog until it is
compacted, but the key that sealed them is compacted out of ``user_keys``.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from aiokafka.structs import ConsumerRecord
from kafka.admin import KafkaAdminClient

from model.training.fit import fit
from model.training.train import TrainConfig
from streams.errors import StateDecryptionError
from streams.kafka.tables import KEY_TABLE, USER_TABLE
from streams.pipeline.crypto import StateCipher
from streams.pipeline.ledger import LedgerSealer
from streams.pipeline.pseudonyms import Pseudonymizer
from streams.pipeline.state import UserState
from streams.settings import Settings
from tests.integration.kafka_io import produce

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

ReadTopic = Callable[..., list[ConsumerRecord[bytes, bytes]]]
ReadTopics = Callable[..., dict[str, list[ConsumerRecord[bytes, bytes]]]]

#: How long the broker may take to compact the destroyed key away (segment roll + cleaner).
SHRED_SECONDS = 90.0


def _view(n: int, user: str, item: str) -> tuple[bytes, bytes]:
    event = {"event_id": f"e{n}", "user_id": user, "ts": 1.7e9 + n, "type": "view", "item_id": item}
    return user.encode(), orjson.dumps(event)


def _latest(records: list) -> dict[bytes, bytes | None]:
    return {record.key: record.value for record in records}


def test_erasure_deletes_shreds_audits_and_restarts_empty(
    kafka_bootstrap: str,
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], subprocess.Popen[bytes]],
    read_topic: ReadTopic,
    read_topics: ReadTopics,
    pseudonym_key: str,
    master_key: bytes,
) -> None:
    settings = make_settings(kafka_bootstrap, "kafka", partitions=2)
    states_topic = f"{settings.app_id}-{USER_TABLE}-changelog"
    keys_topic = f"{settings.app_id}-{KEY_TABLE}-changelog"
    erin = Pseudonymizer(pseudonym_key.encode()).one("erin").encode()
    start_worker(settings)
    before = [_view(0, "erin", "a"), _view(1, "erin", "b"), _view(2, "omar", "c")]
    asyncio.run(produce(settings.bootstrap, settings.events_topic, before))
    keys = read_topic(settings.bootstrap, keys_topic, count=2, settle=0.5)
    [old_key] = [r.value for r in keys if r.key == erin]

    request = orjson.dumps({"action": "erase", "request_id": "req-1"})
    asyncio.run(produce(settings.bootstrap, settings.privacy_requests_topic, [(b"erin", request)]))
    [audit] = read_topic(settings.bootstrap, settings.privacy_audit_topic, count=1)
    outcome = orjson.loads(audit.value)
    assert audit.key == b"req-1" and outcome["outcome"] == "erased"
    assert b"erin" not in audit.value

    # Nobody else writes: the worker itself rolls the segment so the old key is compacted.
    deadline = time.monotonic() + SHRED_SECONDS
    while True:
        tables = read_topics(settings.bootstrap, [keys_topic], count=10**6, timeout=3)
        erin_keys = [r.value for r in tables[keys_topic] if r.key == erin and r.value]
        if old_key not in erin_keys or time.monotonic() > deadline:
            break
    assert old_key not in erin_keys, "the destroyed key is still in the user_keys changelog"

    # Erin comes back: empty state under a new key.
    asyncio.run(produce(settings.bootstrap, settings.events_topic, [_view(3, "erin", "z")]))
    read_topic(settings.bootstrap, settings.recommendations_topic, count=4)
    time.sleep(1)
    tables = read_topics(settings.bootstrap, [states_topic, keys_topic], count=10**6, timeout=3)
    erin_keys = [r.value for r in tables[keys_topic] if r.key == erin and r.value]
    cipher = StateCipher(master_key)
    ledger = erin_keys[-1]  # the ledger after the erasure may still precede it, uncompacted
    new_key = LedgerSealer(master_key).open(erin, ledger).wrapped_key or b""
    sealed = [r.value for r in tables[states_topic] if r.key == erin and r.value]
    assert len(sealed) >= 2, "the pre-erasure states should still be in the uncompacted changelog"
    opened = []
    for record in sealed:
        try:
            opened.append(UserState.from_bytes(cipher.open(erin, new_key, record)))
        except StateDecryptionError:
            continue
    assert [state.items for state in opened] == [["z"]]  # nothing from before the erasure opens
    latest = _latest(tables[states_topic])
    assert UserState.from_bytes(cipher.open(erin, new_key, latest[erin] or b"")).items == ["z"]


def _raw(n: int) -> str:
    return f"RAWID{n:03d}-person@example.com"


def _scan(blob: bytes, where: str, raw_ids: list[bytes]) -> list[str]:
    return [f"{raw.decode()} in {where}" for raw in raw_ids if raw in blob]


def test_no_raw_user_id_outside_the_raw_id_topics(
    kafka_bootstrap: str,
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], subprocess.Popen[bytes]],
    read_topic: ReadTopic,
    read_topics: ReadTopics,
    tmp_path: Path,
) -> None:
    settings = make_settings(kafka_bootstrap, "kafka", partitions=3)
    users = [_raw(n) for n in range(12)]
    raw_ids = [user.encode() for user in users]
    start_worker(settings)
    events: list[tuple[bytes, bytes]] = []
    for n, user in enumerate(users * 3):
        kind = ("view", "add_to_cart", "purchase", "search")[n % 4]
        fields = {"query": "red shoes"} if kind == "search" else {"item_id": f"i{n % 7}"}
        event = {"event_id": f"e{n}", "user_id": user, "session_id": f"{user}-s", "ts": 1.7e9 + n}
        events.append((user.encode(), orjson.dumps({**event, "type": kind, **fields})))
    bad = [(u.encode(), orjson.dumps({"event_id": "x", "user_id": u, "ts": "soon"})) for u in users]
    asyncio.run(produce(settings.bootstrap, settings.events_topic, events + bad))
    request = orjson.dumps({"action": "erase", "request_id": "req-scan"})
    asyncio.run(
        produce(settings.bootstrap, settings.privacy_requests_topic, [(raw_ids[0], request)])
    )
    read_topic(settings.bootstrap, settings.privacy_audit_topic, count=1)
    read_topic(settings.bootstrap, settings.recommendations_topic, count=len(events))

    allowed = {
        settings.events_topic,
        settings.recommendations_topic,
        settings.privacy_requests_topic,
        settings.privacy_audit_topic,
    }
    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap)
    topics = sorted(set(admin.list_topics()) - allowed)
    admin.close()
    mine = [t for t in topics if settings.app_id in t or t == settings.dlq_topic]
    assert len(mine) >= 3, mine  # the DLQ and both changelogs are among them
    records = read_topics(
        settings.bootstrap, [*topics, settings.events_topic], count=10**6, timeout=5
    )
    inputs = b"".join(m.value for m in records.pop(settings.events_topic))
    assert len(_scan(inputs, "events", raw_ids)) == len(raw_ids)  # the scan does find them
    assert len(records[settings.dlq_topic]) == len(bad)
    found = [
        hit
        for topic, messages in records.items()
        for m in messages
        for blob in (m.key or b"", m.value or b"", *(v for _, v in m.headers))
        for hit in _scan(blob, topic, raw_ids)
    ]
    found += _scan((tmp_path / "worker.log").read_bytes(), "worker log", raw_ids)

    # Offline training on a log with raw user ids: nothing of them reaches the checkpoint.
    log = tmp_path / "log.csv"
    rows = ["ts,user_id,session_id,type,item_id,category,price,query"]
    rows += [
        f"{n},{users[n % 12]},{users[n % 12]}-s{n // 120},view,i{n % 9},,," for n in range(480)
    ]
    log.write_text("\n".join(rows) + "\n")
    run = tmp_path / "run"
    fit(
        log,
        run,
        train_config=TrainConfig(epochs=1, negatives=8),
        scorer_options={"d_model": 16},
        progress=False,
    )
    for file in run.rglob("*"):
        if file.is_file():
            found += _scan(file.read_bytes(), str(file.relative_to(tmp_path)), raw_ids)
    assert found == []
