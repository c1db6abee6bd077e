"""A producer cannot take a worker down with long search queries or a flood of items.

A worker with text search on and a short watchdog limit gets batches of 2,000
search events whose queries are 1,024 characters of the costliest text for the
encoder (U+FDFA: about 0.4 s each unbounded, so a quarter of an hour per batch),
between normal events, and queries too long for the schema or the size limit.
Every accepted event must be answered exactly once and the rest dead-lettered,
while the worker stays up: no stall exit, no restart. Items past the catalogue
bound are refused with a warning.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from aiokafka.structs import ConsumerRecord

from streams.settings import Settings
from tests.integration.kafka_io import produce

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

STALL_SECONDS = 10.0
BATCHES = 3
BATCH = 2_000
#: Costly 1,024-character queries (the schema's longest): 18 NFKC characters and
#: 5 tokens per character, one token per character, and about 0.6 per character.
HOSTILE = (
    "\ufdfa" * 1024,
    "".join(chr(0x4E00 + 7 * n) for n in range(1024)),
    ("qzxjv" * 205)[:1024],
)


def _event(n: int, **fields: object) -> tuple[bytes, bytes]:
    user = f"u{n % 1_000}"
    event = {"event_id": f"e{n}", "user_id": user, "ts": 1.7e9 + n, **fields}
    return user.encode(), orjson.dumps(event)


def _events() -> tuple[list[tuple[bytes, bytes]], int]:
    """Hostile batches between normal events, then rejected ones; and how many are accepted."""
    events, n = [], 0
    for _ in range(BATCHES):
        for _ in range(100):
            events.append(_event(n, type="view", item_id=f"i{n % 7}"))
            n += 1
        for _ in range(BATCH):
            events.append(_event(n, type="search", query=HOSTILE[n % len(HOSTILE)]))
            n += 1
        events.append(_event(n, type="search", query="stainless steel kettle"))
        n += 1
    accepted = n
    events.append(_event(n, type="search", query="x" * 1_025))  # past the schema's maxLength
    events.append(_event(n + 1, type="search", query="y" * 64_000))  # just within 64 KiB
    events.append(_event(n + 2, type="search", query="z" * 70_000))  # past max_event_bytes
    return events, accepted


def test_long_queries_and_too_many_items_do_not_stall_the_worker(
    kafka_bootstrap: str,
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], subprocess.Popen[bytes]],
    read_topics: Callable[..., dict[str, list[ConsumerRecord[bytes, bytes]]]],
    tmp_path: Path,
) -> None:
    settings = make_settings(
        kafka_bootstrap, "kafka", stall_seconds=STALL_SECONDS, max_catalogue_items=5
    )
    titles = ["kettle", "yoga mat", "green tea", "running shoes", "headphones", "mug", "lamp"]
    items = [
        (f"i{n}".encode(), orjson.dumps({"id": f"i{n}", "title": t})) for n, t in enumerate(titles)
    ]
    asyncio.run(produce(settings.bootstrap, settings.items_topic, items))
    worker = start_worker(settings)
    events, accepted = _events()
    asyncio.run(produce(settings.bootstrap, settings.events_topic, events))

    out = read_topics(
        settings.bootstrap,
        [settings.recommendations_topic, settings.dlq_topic],
        count=len(events),
        timeout=300,
        settle=3.0,
    )
    log = (tmp_path / "worker.log").read_text()
    assert worker.poll() is None, log[-3000:]
    assert "fetch loop stuck" not in log
    answered = [
        orjson.loads(record.value)["event_id"] for record in out[settings.recommendations_topic]
    ]
    assert sorted(answered) == sorted(f"e{n}" for n in range(accepted))
    reasons = sorted(dict(letter.headers)["reason"] for letter in out[settings.dlq_topic])
    assert reasons == [b"invalid_value", b"invalid_value", b"too_large"]
    assert "2 in all" in log  # the catalogue warning: 7 items, room for 5
