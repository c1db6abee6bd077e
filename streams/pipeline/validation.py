"""Decode and validate raw input records against the published schemas.

The schemas live in ``streams/schemas/`` (``event.schema.json`` for events,
``item.schema.json`` for catalogue items, ``privacy_request.schema.json`` for
erasure requests: the input contracts of DESIGN.md).
Every failure becomes a :class:`Rejection` with a machine-readable reason
instead of an exception, so one bad record never stops a batch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from typing import Any

import fastjsonschema
import orjson

#: Published JSON Schemas of the input topics' values.
EVENT_SCHEMA = "schemas/event.schema.json"
ITEM_SCHEMA = "schemas/item.schema.json"
PRIVACY_REQUEST_SCHEMA = "schemas/privacy_request.schema.json"


class Reason(StrEnum):
    """Why a record was dead-lettered (the ``reason`` header on ``shop.events.dlq``)."""

    TOO_LARGE = "too_large"
    NOT_UTF8 = "not_utf8"
    INVALID_JSON = "invalid_json"
    NOT_OBJECT = "not_object"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    INVALID_VALUE = "invalid_value"
    KEY_MISMATCH = "key_mismatch"
    BAD_TIMESTAMP = "bad_timestamp"
    PROCESSING_ERROR = "processing_error"


@dataclass(frozen=True, slots=True)
class Rejection:
    """A record that failed validation: the reason code and a human-readable detail.

    ``user_id`` is the raw user id the record names, when it can be read: its dead
    letter is then sealed under that user's own key, so an erasure shreds it.
    """

    reason: Reason
    detail: str
    user_id: str | None = None


def load_schema(resource: str = EVENT_SCHEMA) -> dict[str, Any]:
    """A published JSON Schema (:data:`EVENT_SCHEMA` or :data:`ITEM_SCHEMA`)."""
    text = resources.files("streams").joinpath(resource).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


class RecordValidator:
    """Turns raw record values into dicts valid under a schema, or :class:`Rejection` s.

    Examples:
        >>> validate = RecordValidator(max_bytes=1024)
        >>> validate(b'{"event_id":"e1","user_id":"u1","ts":1.0,"type":"view","item_id":"i1"}')
        {'event_id': 'e1', 'user_id': 'u1', 'ts': 1.0, 'type': 'view', 'item_id': 'i1'}
        >>> validate(b'{"event_id":"e1"').reason
        <Reason.INVALID_JSON: 'invalid_json'>
    """

    def __init__(self, *, max_bytes: int, schema: str = EVENT_SCHEMA) -> None:
        self._max_bytes = max_bytes
        published = load_schema(schema)
        self._condition = ConditionalRequired.split_from(published)
        self._check = fastjsonschema.compile(published)

    def __call__(self, raw: bytes | None) -> dict[str, Any] | Rejection:
        if raw is None:
            return Rejection(Reason.NOT_OBJECT, "record has no value")
        if len(raw) > self._max_bytes:
            return Rejection(Reason.TOO_LARGE, f"{len(raw)} bytes > limit {self._max_bytes}")
        try:
            event = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return _decode_failure(raw, exc)
        if not isinstance(event, dict):
            return Rejection(Reason.NOT_OBJECT, f"top level is {type(event).__name__}")
        try:
            self._check(event)
        except fastjsonschema.JsonSchemaValueException as exc:
            return _schema_failure(exc, event)
        if self._condition is not None:
            return self._condition.check(event)
        return event


class InputValidation:
    """The validation stage: each input record checked against its topic's schema.

    Events and privacy requests have their own schemas. Both must be keyed by the raw
    user id (UTF-8) they are about, or one user's state, budget and erasure would split
    across partitions and workers: an event's key must equal its ``user_id``, and a
    request's key names its user (and must equal its ``user_id`` when it has one).
    An event's ``ts`` may be at most ``future_seconds`` ahead of the record's broker
    timestamp, so one event cannot push the privacy windows into the future.

    Examples:
        >>> check = InputValidation(events_topic="ev", requests_topic="rq", max_bytes=1024)
        >>> check("rq", None, b'{"action":"erase","request_id":"r1"}', 0.0).reason
        <Reason.KEY_MISMATCH: 'key_mismatch'>
        >>> check("ev", b"u2", b'{"event_id":"e","user_id":"u1","ts":1,"type":"view",'
        ...       b'"item_id":"i"}', 10.0).reason
        <Reason.KEY_MISMATCH: 'key_mismatch'>
    """

    def __init__(
        self,
        *,
        events_topic: str,
        requests_topic: str,
        max_bytes: int,
        future_seconds: float = 300.0,
    ) -> None:
        self._requests_topic = requests_topic
        self._future_seconds = future_seconds
        self._validators = {
            events_topic: RecordValidator(max_bytes=max_bytes),
            requests_topic: RecordValidator(max_bytes=max_bytes, schema=PRIVACY_REQUEST_SCHEMA),
        }

    def __call__(
        self, topic: str, key: bytes | None, value: bytes | None, timestamp: float
    ) -> dict[str, Any] | Rejection:
        """The decoded value of a record of ``topic``, or why it goes to the DLQ.

        ``timestamp`` is the record's broker timestamp in seconds.
        """
        outcome = self._validators[topic](value)
        if not isinstance(outcome, dict):
            return outcome
        if topic == self._requests_topic:
            return _check_request_key(key, outcome)
        user_id = outcome["user_id"]
        if key is None or key != user_id.encode("utf-8"):
            return Rejection(
                Reason.KEY_MISMATCH, "record key is not the event's user_id", user_id=user_id
            )
        if outcome["ts"] > timestamp + self._future_seconds:
            ahead = outcome["ts"] - timestamp
            return Rejection(
                Reason.BAD_TIMESTAMP,
                f"ts is {ahead:.0f} s ahead of the broker timestamp "
                f"(at most {self._future_seconds:.0f} s)",
                user_id=user_id,
            )
        return outcome


def _check_request_key(key: bytes | None, request: dict[str, Any]) -> dict[str, Any] | Rejection:
    """A privacy request's key must be the UTF-8 user id it names."""
    if not key:
        return Rejection(Reason.KEY_MISMATCH, "record key (the raw user id) is missing")
    try:
        user_id = key.decode("utf-8")
    except UnicodeDecodeError:
        return Rejection(Reason.NOT_UTF8, "record key is not UTF-8")
    named = request.get("user_id")
    if named is not None and named != user_id:
        return Rejection(Reason.KEY_MISMATCH, "record key is not the request's user_id")
    return request


@dataclass(frozen=True, slots=True)
class ConditionalRequired:
    """A schema's ``if {field: const} then required A else required B``, checked without raising.

    fastjsonschema checks ``if`` by raising and catching an exception, which took
    a tenth of a worker's time (docs/performance.md); this is the same rule, read
    from the published schema.

    Examples:
        >>> rule = ConditionalRequired("type", "search", ("query",), ("item_id",))
        >>> rule.check({"type": "view"}).reason
        <Reason.MISSING_FIELD: 'missing_field'>
        >>> rule.check({"type": "search", "query": "shoes"})
        {'type': 'search', 'query': 'shoes'}
    """

    field: str
    value: Any
    then_required: tuple[str, ...]
    else_required: tuple[str, ...]

    @classmethod
    def split_from(cls, schema: dict[str, Any]) -> ConditionalRequired | None:
        """Take the rule out of ``schema`` (which then compiles without it); None if it has none.

        Raises:
            ValueError: the schema's ``if`` is of another form than this one.
        """
        if "if" not in schema:
            return None
        condition = schema.pop("if")
        then, otherwise = schema.pop("then", {}), schema.pop("else", {})
        (field, rule), *more = condition.get("properties", {}).items()
        if more or set(rule) != {"const"} or (set(then) | set(otherwise)) - {"required"}:
            raise ValueError(f"unsupported conditional in schema: {condition}")
        return cls(
            field,
            rule["const"],
            tuple(then.get("required", ())),
            tuple(otherwise.get("required", ())),
        )

    def check(self, event: dict[str, Any]) -> dict[str, Any] | Rejection:
        """``event`` when it has the fields its branch requires, else the rejection."""
        required = self.then_required if event.get(self.field) == self.value else self.else_required
        missing = [name for name in required if name not in event]
        if missing:
            named = event.get("user_id")
            return Rejection(
                Reason.MISSING_FIELD,
                f"missing {','.join(missing)}",
                named if isinstance(named, str) else None,
            )
        return event


def _decode_failure(raw: bytes, exc: orjson.JSONDecodeError) -> Rejection:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        return Rejection(Reason.NOT_UTF8, f"invalid UTF-8 at byte {bad.start}")
    return Rejection(Reason.INVALID_JSON, str(exc)[:200])


def _schema_failure(
    exc: fastjsonschema.JsonSchemaValueException, value: dict[str, Any]
) -> Rejection:
    field = ".".join(str(part) for part in exc.path[1:]) or "event"
    named = value.get("user_id")
    user_id = named if isinstance(named, str) and named else None
    if exc.rule == "required":
        missing = ",".join(exc.rule_definition or [])
        return Rejection(Reason.MISSING_FIELD, f"missing {missing}", user_id)
    if exc.rule == "type":
        return Rejection(Reason.WRONG_TYPE, f"{field}: {exc.message}"[:200], user_id)
    if exc.rule == "enum" and field == "type":
        return Rejection(Reason.UNKNOWN_EVENT_TYPE, f"{field}: {exc.message}"[:200], user_id)
    if field == "ts":
        return Rejection(Reason.BAD_TIMESTAMP, f"{field}: {exc.message}"[:200], user_id)
    return Rejection(Reason.INVALID_VALUE, f"{field}: {exc.message}"[:200], user_id)
