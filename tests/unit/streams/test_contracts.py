"""Message contracts: docs/contracts.md's examples and the pipeline's outputs fit the schemas."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import fastjsonschema
import orjson
import pytest

from online_learning.announcement import Announcement, PrivacySpend
from streams.pipeline.build import build_pipeline
from streams.pipeline.pseudonyms import Pseudonymizer
from streams.pipeline.records import InputRecord, OutputRecord
from streams.pipeline.validation import Reason, load_schema
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
CONTRACTS = ROOT / "docs" / "contracts.md"

#: A heading naming a schema file, then (after blank lines only) a ```json block.
EXAMPLE = re.compile(
    r"^#+ [^\n]*`(?P<schema>\w+\.schema\.json)`[^\n]*\n\s*```json\n(?P<body>.*?)\n```",
    re.MULTILINE | re.DOTALL,
)
HEADING_WITH_SCHEMA = re.compile(r"^#+ [^\n]*\w+\.schema\.json", re.MULTILINE)

SETTINGS = Settings(pseudonym_key="p" * 32, text_search=False, top_k=3)
MASTER = bytes(range(32))


@functools.cache
def validator(schema: str) -> Callable[[Any], Any]:
    """The compiled schema ``schema`` as the package ships it."""
    return fastjsonschema.compile(load_schema(f"schemas/{schema}"))


def examples() -> list[tuple[str, dict[str, Any]]]:
    """Every (schema file, example) pair of docs/contracts.md."""
    text = CONTRACTS.read_text(encoding="utf-8")
    return [(m["schema"], orjson.loads(m["body"])) for m in EXAMPLE.finditer(text)]


def shipped_schemas() -> set[str]:
    return {p.name for p in resources.files("streams").joinpath("schemas").iterdir()}


def test_every_schema_has_an_example_under_a_heading_naming_it() -> None:
    found = examples()
    text = CONTRACTS.read_text(encoding="utf-8")
    assert len(found) == len(HEADING_WITH_SCHEMA.findall(text))  # no heading without its block
    assert {schema for schema, _ in found} == shipped_schemas()


@pytest.mark.parametrize(("schema", "example"), examples())
def test_examples_validate(schema: str, example: dict[str, Any]) -> None:
    assert validator(schema)(example) == example


@pytest.mark.parametrize(
    ("schema", "field", "mutate"),
    [
        ("event.schema.json", "user_id", lambda e: e.pop("user_id")),
        ("event.schema.json", "item_id", lambda e: e.pop("item_id")),
        ("recommendation.schema.json", "extra", lambda r: r.update(extra=1)),
        ("recommendation.schema.json", "items", lambda r: r["items"][0].update(score="high")),
        ("recommendation.schema.json", "context", lambda r: r.update(context="home")),
        ("privacy_audit.schema.json", "outcome", lambda a: a.update(outcome="deleted")),
        ("dead_letter.schema.json", "source_offset", lambda h: h.update(source_offset=7)),
        ("dead_letter.schema.json", "reason", lambda h: h.update(reason="bad")),
        ("model_announcement.schema.json", "version", lambda a: a.update(version="../x")),
        ("privacy_request.schema.json", "action", lambda r: r.update(action="forget")),
        ("item.schema.json", "title", lambda i: i.pop("title")),
        ("campaign.schema.json", "per", lambda c: c["bid"].update(per="view")),
        ("campaign.schema.json", "keywrods", lambda c: c["targeting"].update(keywrods=["x"])),
        ("ads_spend.schema.json", "worker", lambda s: s.update(worker="")),
        ("ads_report.schema.json", "delta", lambda r: r.update(delta=1e-6)),
    ],
)
def test_a_broken_example_is_rejected(
    schema: str, field: str, mutate: Callable[[dict[str, Any]], object]
) -> None:
    example = next(e for s, e in examples() if s == schema)
    mutate(example)
    with pytest.raises(fastjsonschema.JsonSchemaValueException, match=field):
        validator(schema)(example)


def test_the_dead_letter_reasons_are_the_codes_reasons() -> None:
    reasons = load_schema("schemas/dead_letter.schema.json")["properties"]["reason"]["enum"]
    assert reasons == [reason.value for reason in Reason]


def _record(topic: str, key: bytes | None, value: bytes, offset: int) -> InputRecord:
    return InputRecord(
        key=key, value=value, topic=topic, partition=2, offset=offset, timestamp=99.5
    )


def _event(user: str, n: int, **fields: object) -> bytes:
    event = {"event_id": f"e{n}", "user_id": user, "session_id": "s1", "ts": 1.0 + n}
    return orjson.dumps({**event, **fields})


def _pipeline_outputs() -> tuple[list[OutputRecord], list[OutputRecord], list[OutputRecord]]:
    """Recommendations, audits and dead letters of one batch through the real pipeline."""
    pipeline = build_pipeline(
        SETTINGS,
        pseudonymizer=Pseudonymizer(b"p" * 32),
        master_key=MASTER,
        clock=lambda: 100.0,
    )
    events, requests = SETTINGS.events_topic, SETTINGS.privacy_requests_topic
    erase = orjson.dumps({"action": "erase", "request_id": "r1"})
    records = [
        _record(events, b"u1", _event("u1", 0, type="view", item_id="a"), 0),
        _record(events, b"u2", _event("u2", 1, type="view", item_id="a"), 1),
        _record(events, b"u1", _event("u1", 2, type="add_to_cart", item_id="b"), 2),
        _record(events, b"u2", _event("u2", 3, type="search", query="red shoes"), 3),
        _record(events, b"u2", _event("u2", 4, type="view"), 4),  # no item_id
        _record(requests, b"u1", erase, 0),
    ]
    result = pipeline.process(records, read_state=lambda _: None, read_key=lambda _: None)
    return result.recommendations, result.audit, result.dead_letters


def test_the_pipelines_outputs_fit_their_schemas() -> None:
    recommendations, audits, letters = _pipeline_outputs()
    assert len(recommendations) == 4 and len(audits) == 1 and len(letters) == 1
    contexts = set()
    for record in recommendations:
        value = orjson.loads(record.value or b"")
        validator("recommendation.schema.json")(value)
        contexts.add(value["context"])
    assert contexts == {"browse", "search"}
    audit = orjson.loads(audits[0].value or b"")
    assert validator("privacy_audit.schema.json")(audit)["outcome"] == "erased"
    headers = {name: value.decode() for name, value in letters[0].headers}
    assert len(headers) == len(letters[0].headers)  # no header name twice
    assert validator("dead_letter.schema.json")(headers)["reason"] == "missing_field"


@pytest.mark.parametrize(
    ("parent", "privacy"), [(None, None), ("v1", PrivacySpend(epsilon=0.9, delta=1e-5))]
)
def test_an_announcements_bytes_fit_their_schema(
    parent: str | None, privacy: PrivacySpend | None
) -> None:
    announcement = Announcement("scorer", "v2", parent, "/models/v2", {"MRR@20": 18}, privacy, 1.0)
    value = orjson.loads(announcement.to_bytes())
    assert validator("model_announcement.schema.json")(value) == value
