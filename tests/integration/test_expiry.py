"""Inactive users expire on a real worker: state, key and ledger go, the next event starts empty."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable

import orjson
import pytest
from aiokafka.structs import ConsumerRecord

from streams.kafka.tables import KEY_TABLE, USER_TABLE
from streams.settings import Settings
from tests.integration.kafka_io import produce

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

ReadTopic = Callable[..., list[ConsumerRecord[bytes, bytes]]]
ReadTopics = Callable[..., dict[str, list[ConsumerRecord[bytes, bytes]]]]
TTL = 4.0


def _view(n: int, user: str) -> tuple[bytes, bytes]:
    event = {"event_id": f"e{n}", "user_id": user, "ts": 1.7e9 + n, "type": "view"}
    return user.encode(), orjson.dumps({**event, "item_id": f"{user}-i{n}"})


def test_users_inactive_longer_than_the_ttl_are_deleted(
    kafka_bootstrap: str,
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], subprocess.Popen[bytes]],
    read_topic: ReadTopic,
    read_topics: ReadTopics,
) -> None:
    settings = make_settings(
        kafka_bootstrap,
        "kafka",
        partitions=2,
        text_search=False,
        state_ttl_seconds=TTL,
        raw_topic_retention_seconds=TTL / 2,
    )
    users = [f"idle-{n}" for n in range(5)]
    start_worker(settings)
    asyncio.run(produce(settings.bootstrap, settings.events_topic, [_view(0, u) for u in users]))
    read_topic(settings.bootstrap, settings.recommendations_topic, count=len(users))
    changelogs = [f"{settings.app_id}-{table}-changelog" for table in (USER_TABLE, KEY_TABLE)]
    deadline = time.monotonic() + 4 * TTL + 30
    while time.monotonic() < deadline:
        tables = read_topics(settings.bootstrap, changelogs, count=10**6, timeout=2, settle=0)
        latest = [{r.key: r.value for r in tables[topic]} for topic in changelogs]
        if all(len(t) == len(users) and not any(t.values()) for t in latest):
            break
    assert [sorted(t.values(), key=repr) for t in latest] == [[None] * len(users)] * 2
    asyncio.run(produce(settings.bootstrap, settings.events_topic, [_view(1, users[0])]))
    out = read_topic(settings.bootstrap, settings.recommendations_topic, count=len(users) + 1)
    [answer] = [v for v in map(orjson.loads, (m.value for m in out)) if v["event_id"] == "e1"]
    items = [item["item_id"] for item in answer["items"]]
    assert items == [f"{users[0]}-i1"]  # starts empty: the expired history is gone
