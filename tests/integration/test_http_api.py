"""The HTTP API of two real workers on Apache Kafka: any worker answers for any user.

Each user's list is asked of both workers: the owner of the user's partition
answers from memory, the other forwards to it; both must return exactly the
recommendation the topic carries for the user's last event. Search ranks on
the owner's state; an erasure takes the list away at once; no token, no answer;
and no raw user id reaches the workers' log.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from aiokafka.structs import ConsumerRecord

from streams.http.routing import partition_of
from streams.settings import Settings
from streams.worker.process import read_ready
from tests.integration.kafka_io import produce

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

TOKEN = "integration-http-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PARTITIONS = 4
TITLES = {
    "a": "red running shoes",
    "b": "blue running shoes",
    "c": "stainless steel kettle",
    "d": "wireless bluetooth headphones",
    "e": "yoga mat",
}
READY_SECONDS = 60.0


def call(
    url: str, *, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    """(status, JSON body) of a GET, or of a POST when ``body`` is given."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={**(headers or {})})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def wait_ready(base: str) -> dict[str, Any]:
    """/readyz once it answers 200 (both workers share the partitions by then)."""
    deadline = time.monotonic() + READY_SECONDS
    while True:
        status, body = call(f"{base}/readyz")
        if status == 200:
            return body
        assert time.monotonic() < deadline, f"{base} not ready: {body}"
        time.sleep(0.2)


def users_on_every_partition(prefix: str, per_partition: int) -> list[str]:
    """User ids, ``per_partition`` on each partition of the events topic."""
    users: dict[int, list[str]] = {p: [] for p in range(PARTITIONS)}
    n = 0
    while any(len(found) < per_partition for found in users.values()):
        user = f"{prefix}-{n}"
        found = users[partition_of(user, PARTITIONS)]
        if len(found) < per_partition:
            found.append(user)
        n += 1
    return [user for found in users.values() for user in found]


def view(user: str, item: str, n: int) -> tuple[bytes, bytes]:
    event = {"event_id": f"{user}-e{n}", "user_id": user, "ts": 1.7e9 + n, "type": "view"}
    return user.encode(), orjson.dumps({**event, "item_id": item})


def test_both_workers_answer_every_user_with_the_owners_latest_list(
    kafka_bootstrap: str,
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], subprocess.Popen[bytes]],
    read_topics: Callable[..., dict[str, list[ConsumerRecord[bytes, bytes]]]],
    tmp_path: Path,
) -> None:
    settings = make_settings(
        kafka_bootstrap, "kafka", partitions=PARTITIONS, top_k=5, http_token=TOKEN
    )
    items = [(k.encode(), orjson.dumps({"id": k, "title": t})) for k, t in TITLES.items()]
    asyncio.run(produce(settings.bootstrap, settings.items_topic, items))
    bases = []
    for _ in range(2):
        start_worker(settings)
        bases.append(f"http://127.0.0.1:{read_ready(tmp_path / 'worker.ready')['http_port']}")
    owned = [wait_ready(base)["partitions"] for base in bases]
    assert sorted(owned[0] + owned[1]) == list(range(PARTITIONS)) and all(owned)

    prefix = f"shopper-{uuid.uuid4().hex[:8]}"
    users = users_on_every_partition(prefix, per_partition=2)
    events = [view(user, item, n) for n, item in enumerate("abc") for user in users]
    asyncio.run(produce(settings.bootstrap, settings.events_topic, events))
    out = read_topics(settings.bootstrap, [settings.recommendations_topic], count=len(events))
    last: dict[str, dict[str, Any]] = {}
    for record in sorted(out[settings.recommendations_topic], key=lambda r: r.offset):
        last[record.key.decode()] = orjson.loads(record.value)  # in order on its partition
    assert len(out[settings.recommendations_topic]) == len(events) and set(last) == set(users)

    for user in users:
        path = f"/v1/users/{quote(user, safe='')}/recommendations"
        answers = [call(base + path, headers=AUTH) for base in bases]
        assert answers == [(200, last[user])] * 2, user
        assert last[user]["event_id"] == f"{user}-e2"

    # Search: ranked on the owner's state, whichever worker is asked.
    searcher = users[0]
    searched = [
        call(
            f"{base}/v1/search", body={"user_id": searcher, "query": "kettle", "k": 3}, headers=AUTH
        )
        for base in bases
    ]
    for status, answer in searched:
        assert status == 200 and answer["context"] == "search" and answer["user_id"] == searcher
        assert answer["event_id"].startswith("search-") and len(answer["items"]) <= 3
        assert answer["items"][0]["item_id"] == "c"
    assert searched[0][1]["items"] == searched[1][1]["items"]

    # No token, a wrong one: refused by both.
    for base in bases:
        assert call(f"{base}/v1/users/{users[0]}/recommendations")[0] == 401
        wrong = {"Authorization": "Bearer wrong-token-0123456789"}
        assert (
            call(f"{base}/v1/search", body={"user_id": "x", "query": "y"}, headers=wrong)[0] == 401
        )

    # Erasure: once audited, neither worker has a list for the user.
    erased = users[1]
    request = orjson.dumps({"action": "erase", "request_id": f"r-{uuid.uuid4().hex[:8]}"})
    asyncio.run(
        produce(settings.bootstrap, settings.privacy_requests_topic, [(erased.encode(), request)])
    )
    read_topics(settings.bootstrap, [settings.privacy_audit_topic], count=1, settle=0.0)
    for base in bases:
        status, body = call(f"{base}/v1/users/{erased}/recommendations", headers=AUTH)
        assert (status, body["error"]) == (404, "no_list")
    assert call(f"{bases[0]}/v1/users/{users[2]}/recommendations", headers=AUTH)[0] == 200

    log = (tmp_path / "worker.log").read_text()
    assert prefix not in log, "a raw user id reached a worker's log"
