"""The backlog of the crash-style tests (kill -9, rebalances, broker restarts, the watchdog).

Plain helpers, shared by those tests and ``bench/kafka_restart.py``; the fixture
that produces the backlog is ``backlog_settings`` (tests/integration/conftest.py).
"""

from __future__ import annotations

import asyncio
from collections import Counter

import orjson

from streams.settings import Settings
from tests.integration.kafka_io import collect, count_records

#: Events in the backlog.
N_EVENTS = 20_000
#: Small batches, so that the one batch a crash may answer twice is <= 0.1 % of the events.
BATCH_MAX = 20


def shopper_events(count: int) -> list[tuple[bytes, bytes]]:
    """``count`` view events ``e0 ..``, keyed by user, of 500 shoppers over 97 items."""
    out = []
    for n in range(count):
        user = f"shopper-{n % 500}"
        event = {
            "event_id": f"e{n}",
            "user_id": user,
            "session_id": f"s{n % 500}",
            "ts": 1.7e9 + n,
            "type": "view",
            "item_id": f"i{n % 97}",
        }
        out.append((user.encode(), orjson.dumps(event)))
    return out


def count_answers(settings: Settings, at_least: int, *, timeout: float) -> int:
    """Wait until the recommendations topic holds ``at_least`` records (or ``timeout``
    seconds passed); returns how many it held."""
    return asyncio.run(
        count_records(
            settings.bootstrap, settings.recommendations_topic, at_least=at_least, timeout=timeout
        )
    )


def assert_every_event_answered_and_few_twice(settings: Settings) -> None:
    """Every backlog event was answered, and at most ``N_EVENTS // 1000`` twice or more."""
    out = asyncio.run(
        collect(
            settings.bootstrap,
            [settings.recommendations_topic],
            count=N_EVENTS,
            timeout=180,
            settle=3.0,
        )
    )[settings.recommendations_topic]
    answers = Counter(orjson.loads(m.value)["event_id"] for m in out)
    missing = {f"e{n}" for n in range(N_EVENTS)} - set(answers)
    assert not missing, f"{len(missing)} accepted events never answered"
    duplicates = sum(count - 1 for count in answers.values())
    assert duplicates <= N_EVENTS // 1000, f"{duplicates} duplicate answers"
