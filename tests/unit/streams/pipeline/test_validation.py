"""The input contract: every kind of bad record gets a machine-readable reason."""

from __future__ import annotations

import orjson
import pytest

from streams.pipeline.validation import (
    InputValidation,
    Reason,
    RecordValidator,
    Rejection,
    load_schema,
)

GOOD = {"event_id": "e1", "user_id": "u1", "ts": 1.5, "type": "view", "item_id": "i1"}


@pytest.fixture
def validate() -> RecordValidator:
    return RecordValidator(max_bytes=4096)


def _raw(**changes: object) -> bytes:
    event = {**GOOD, **changes}
    return orjson.dumps({k: v for k, v in event.items() if v is not None})


def test_a_valid_event_is_returned_with_unknown_fields_kept(validate: RecordValidator) -> None:
    assert validate(_raw(extra={"a": 1})) == {**GOOD, "extra": {"a": 1}}


def test_search_needs_a_query_but_no_item(validate: RecordValidator) -> None:
    assert validate(_raw(type="search", item_id=None, query="running shoes"))["query"] == (
        "running shoes"
    )
    rejected = validate(_raw(type="search", item_id=None))
    assert rejected == Rejection(Reason.MISSING_FIELD, "missing query", user_id="u1")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"event_id": "e1", "user_id"', Reason.INVALID_JSON),
        (b"", Reason.INVALID_JSON),
        (b"\xff\xfe\x00garbage", Reason.NOT_UTF8),
        (b'{"event_id": "\xc3\x28"}', Reason.NOT_UTF8),
        (b"[1, 2]", Reason.NOT_OBJECT),
        (b'"just a string"', Reason.NOT_OBJECT),
        (b"null", Reason.NOT_OBJECT),
        (None, Reason.NOT_OBJECT),
        (b"{" + b" " * 5000 + b"}", Reason.TOO_LARGE),
        (
            b'{"event_id": "e", "user_id": "u", "ts": NaN, "type": "view", "item_id": "i"}',
            Reason.INVALID_JSON,
        ),
    ],
)
def test_undecodable_records_are_rejected(
    validate: RecordValidator, raw: bytes | None, reason: Reason
) -> None:
    outcome = validate(raw)
    assert isinstance(outcome, Rejection)
    assert outcome.reason is reason
    assert outcome.detail


@pytest.mark.parametrize(
    ("changes", "reason", "detail_has"),
    [
        ({"user_id": None}, Reason.MISSING_FIELD, "user_id"),
        ({"event_id": None}, Reason.MISSING_FIELD, "event_id"),
        ({"item_id": None}, Reason.MISSING_FIELD, "item_id"),
        ({"ts": "yesterday"}, Reason.WRONG_TYPE, "ts"),
        ({"ts": True}, Reason.WRONG_TYPE, "ts"),
        ({"user_id": 42}, Reason.WRONG_TYPE, "user_id"),
        ({"price": "cheap"}, Reason.WRONG_TYPE, "price"),
        ({"type": "teleport"}, Reason.UNKNOWN_EVENT_TYPE, "type"),
        ({"ts": -1}, Reason.BAD_TIMESTAMP, "ts"),
        ({"ts": 1.7e12}, Reason.BAD_TIMESTAMP, "ts"),  # milliseconds, not seconds
        ({"user_id": ""}, Reason.INVALID_VALUE, "user_id"),
    ],
)
def test_schema_violations_name_the_field(
    validate: RecordValidator, changes: dict[str, object], reason: Reason, detail_has: str
) -> None:
    outcome = validate(_raw(**changes))
    assert isinstance(outcome, Rejection)
    assert outcome.reason is reason
    assert detail_has in outcome.detail


def test_the_published_schema_lists_the_design_fields() -> None:
    schema = load_schema()
    assert set(schema["required"]) == {"event_id", "user_id", "ts", "type"}
    assert schema["properties"]["type"]["enum"] == [
        "view",
        "click",
        "search",
        "add_to_cart",
        "purchase",
    ]
    assert schema["additionalProperties"] is True


CHECK = InputValidation(events_topic="ev", requests_topic="rq", max_bytes=4096, future_seconds=300)


@pytest.mark.parametrize("key", [None, b"", b"u2", b"u1 ", "u1".encode("utf-16")])
def test_an_event_not_keyed_by_its_user_id_is_a_key_mismatch(key: bytes | None) -> None:
    outcome = CHECK("ev", key, _raw(), 10.0)
    assert isinstance(outcome, Rejection) and outcome.reason is Reason.KEY_MISMATCH
    assert outcome.user_id == "u1"  # its dead letter is sealed under the named user's key
    assert CHECK("ev", b"u1", _raw(), 10.0) == GOOD


def test_a_request_keyed_by_another_user_than_it_names_is_a_key_mismatch() -> None:
    request = orjson.dumps({"action": "erase", "request_id": "r", "user_id": "u1"})
    assert CHECK("rq", b"u1", request, 0.0) == orjson.loads(request)
    for key in (b"u2", None):
        outcome = CHECK("rq", key, request, 0.0)
        assert isinstance(outcome, Rejection) and outcome.reason is Reason.KEY_MISMATCH


def test_an_event_time_ahead_of_the_broker_time_is_a_bad_timestamp() -> None:
    assert CHECK("ev", b"u1", _raw(ts=1_300.0), 1_000.0) == {**GOOD, "ts": 1_300.0}
    outcome = CHECK("ev", b"u1", _raw(ts=1_301.0), 1_000.0)
    assert isinstance(outcome, Rejection) and outcome.reason is Reason.BAD_TIMESTAMP
    assert CHECK("ev", b"u1", _raw(ts=1.0), 1_000.0) == {**GOOD, "ts": 1.0}  # late is fine
