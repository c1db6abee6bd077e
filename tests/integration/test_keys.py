"""Keys on Apache Kafka: a wrong master key stops a worker; a rotation keeps every user's state."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from aiokafka.structs import ConsumerRecord
from pydantic import SecretStr

from streams.errors import ConfigurationError, WorkerError
from streams.kafka.announce import publish
from streams.ops.rewrap import rewrap
from streams.settings import Settings
from tests.integration.events import ITEMS
from tests.integration.kafka_io import produce

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

ReadTopic = Callable[..., list[ConsumerRecord[bytes, bytes]]]
NEW_MASTER = bytes(range(100, 132))


def _view(n: int, item: str | None = None) -> tuple[bytes, bytes]:
    event = {"event_id": f"e{n}", "user_id": "kim", "ts": 1.7e9 + n, "type": "view"}
    return b"kim", orjson.dumps({**event, "item_id": item or f"k{n}"})


def test_a_wrong_master_key_stops_the_worker_and_a_rotation_keeps_state(
    kafka_bootstrap: str,
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], subprocess.Popen[bytes]],
    stop_worker: Callable[[subprocess.Popen[bytes]], int],
    read_topic: ReadTopic,
    master_key: bytes,
    pseudonym_key: str,
    tiny_checkpoint: Callable[..., Path],
    tmp_path: Path,
) -> None:
    settings = make_settings(
        kafka_bootstrap, "kafka", partitions=2, text_search=False, model_store=tmp_path / "store"
    )
    rotated = settings.model_copy(update={"master_key": SecretStr(NEW_MASTER.hex())})
    worker = start_worker(settings)
    asyncio.run(produce(settings.bootstrap, settings.events_topic, [_view(n) for n in range(3)]))
    read_topic(settings.bootstrap, settings.recommendations_topic, count=3)
    with pytest.raises(ConfigurationError, match="running"):  # workers must be stopped first
        rewrap(settings, old=master_key, new=NEW_MASTER, pseudonym=pseudonym_key.encode())
    assert stop_worker(worker) == 0
    served = publish(settings, tiny_checkpoint(tmp_path / "run"), parent=None)  # old key signs

    with pytest.raises(WorkerError, match="INTENTSTREAM_MASTER_KEY"):
        start_worker(rotated)  # would otherwise restart every user afresh, silently

    report = rewrap(settings, old=master_key, new=NEW_MASTER, pseudonym=pseudonym_key.encode())
    assert report.rewrapped == 1 and report.unreadable == 0
    assert report.reannounced == served.version
    start_worker(rotated)
    asyncio.run(produce(settings.bootstrap, settings.events_topic, [_view(3)]))
    out = read_topic(settings.bootstrap, settings.recommendations_topic, count=4)
    latest = orjson.loads(out[-1].value)
    assert latest["event_id"] == "e3"
    assert {"k0", "k1", "k2"} <= {item["item_id"] for item in latest["items"]}  # state kept
    # The served version was announced again under the new key: the worker scores
    # with it (items it knows).
    versions, sent, deadline = [], 4, time.monotonic() + 30
    while served.version not in versions and time.monotonic() < deadline:
        view = _view(sent, ITEMS[sent % len(ITEMS)])
        asyncio.run(produce(settings.bootstrap, settings.events_topic, [view]))
        sent += 1
        out = read_topic(settings.bootstrap, settings.recommendations_topic, count=sent)
        versions = [orjson.loads(m.value)["model_version"] for m in out]
    assert served.version in versions
