"""A real worker on Apache Kafka writes records that fit the published schemas.

Valid events of every type, an erasure request and a malformed record go in; every
recommendation, the audit record and the dead letter's headers that come out are
checked against ``streams/schemas/`` (docs/contracts.md).
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable
from typing import Any

import fastjsonschema
import orjson
import pytest

from streams.pipeline.validation import load_schema
from streams.settings import Settings
from tests.integration.kafka_io import collect, produce

pytestmark = [pytest.mark.integration, pytest.mark.kafka]


def _validator(schema: str) -> Callable[[Any], Any]:
    return fastjsonschema.compile(load_schema(f"schemas/{schema}"))


def _event(n: int, user: str, kind: str, **fields: object) -> tuple[bytes, bytes]:
    event = {"event_id": f"ev-{n}", "user_id": user, "session_id": f"s-{user}", "ts": 1.7e9 + n}
    return user.encode(), orjson.dumps({**event, "type": kind, **fields})


EVENTS = [
    _event(0, "u1", "view", item_id="a", category="shoes", price=59.9, dwell_ms=5300),
    _event(1, "u2", "view", item_id="a"),
    _event(2, "u1", "click", item_id="b"),
    _event(3, "u2", "search", query="running shoes"),
    _event(4, "u1", "add_to_cart", item_id="b"),
    _event(5, "u1", "purchase", item_id="b", price=59.9),
]
MALFORMED = (b"u3", b'{"event_id": "ev-9", "user_id": "u3", "ts": 1.0, "type": "view"}')
ERASE = (b"u1", orjson.dumps({"action": "erase", "request_id": "req-1"}))


def test_a_workers_outputs_fit_their_schemas(
    kafka_bootstrap: str,
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], subprocess.Popen[bytes]],
) -> None:
    settings = make_settings(kafka_bootstrap, "kafka", partitions=1)
    start_worker(settings)
    asyncio.run(produce(settings.bootstrap, settings.events_topic, [*EVENTS, MALFORMED]))
    asyncio.run(produce(settings.bootstrap, settings.privacy_requests_topic, [ERASE]))
    topics = [settings.recommendations_topic, settings.privacy_audit_topic, settings.dlq_topic]
    out = asyncio.run(collect(settings.bootstrap, topics, count=len(EVENTS) + 2))

    recommendations = out[settings.recommendations_topic]
    assert len(recommendations) == len(EVENTS)
    check = _validator("recommendation.schema.json")
    contexts = {check(orjson.loads(record.value))["context"] for record in recommendations}
    assert contexts == {"browse", "search"}

    [audit] = out[settings.privacy_audit_topic]
    assert audit.key == b"req-1"
    _validator("privacy_audit.schema.json")(orjson.loads(audit.value))

    [letter] = out[settings.dlq_topic]
    headers = {name: value.decode() for name, value in letter.headers}
    assert len(headers) == len(letter.headers)
    assert _validator("dead_letter.schema.json")(headers)["reason"] == "missing_field"
    assert letter.key is None and MALFORMED[1] not in letter.value
