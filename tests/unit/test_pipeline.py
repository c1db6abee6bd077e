"""The agent's pure per-batch step: outputs, dead letters, state, batching invariance."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from model.baseline import BASELINE_VERSION
from streams.features import UserFeatures
from streams.pipeline import BatchResult, EventPipeline
from streams.pseudonym import Pseudonymizer
from streams.records import InputRecord
from streams.settings import Settings

KEY = b"p" * 32
SETTINGS = Settings(pseudonym_key="p" * 32, top_k=3)


def _pipeline() -> EventPipeline:
    return EventPipeline(SETTINGS, pseudonymizer=Pseudonymizer(KEY), clock=lambda: 100.0)


def _record(value: bytes | None, offset: int, *, partition: int = 0) -> InputRecord:
    return InputRecord(
        key=b"k",
        value=value,
        topic="shop.events",
        partition=partition,
        offset=offset,
        timestamp=99.5,
    )


def _view(user: str, item: str, event_id: str = "e") -> bytes:
    return orjson.dumps(
        {
            "event_id": event_id,
            "user_id": user,
            "ts": 1.0,
            "type": "view",
            "item_id": item,
            "session_id": "s1",
        }
    )


def _run(
    pipeline: EventPipeline, records: list[InputRecord], store: dict[bytes, bytes]
) -> BatchResult:
    result = pipeline.process(records, read_state=store.get)
    store.update({user: state for user, (_, state) in result.states.items()})
    return result


def test_one_recommendation_per_accepted_event_in_the_design_format() -> None:
    store: dict[bytes, bytes] = {}
    result = _run(
        _pipeline(), [_record(_view("u1", "a", "e1"), 0), _record(_view("u1", "b", "e2"), 1)], store
    )
    assert [r.key for r in result.recommendations] == [b"u1", b"u1"]
    last = orjson.loads(result.recommendations[-1].value or b"")
    items = last.pop("items")
    intent = last.pop("purchase_intent")
    assert last == {
        "user_id": "u1",
        "event_id": "e2",
        "ts": 100.0,
        "context": "browse",
        "model_version": BASELINE_VERSION,
        "latency_ms": 500.0,
    }
    # a -> b was just learned, so b leads; a follows on popularity.
    assert [item["item_id"] for item in items] == ["b", "a"]
    assert items[0]["score"] == round(0.5 / 1.5, 6)  # a is the 2nd-latest item: weight 0.5
    assert 0 < intent < 1
    assert result.dead_letters == []


def test_bad_records_become_dead_letters_with_original_bytes_and_position() -> None:
    bad = b'{"event_id": "e1", "user_id": 7'
    result = _run(_pipeline(), [_record(bad, 5, partition=2), _record(_view("u", "i"), 6)], {})
    assert len(result.recommendations) == 1
    [letter] = result.dead_letters
    assert letter.topic == SETTINGS.dlq_topic
    assert letter.value == bad and letter.key == b"k"
    assert dict(letter.headers) == {
        "reason": b"invalid_json",
        "detail": letter.headers[1][1],
        "source_topic": b"shop.events",
        "source_partition": b"2",
        "source_offset": b"5",
    }


def test_state_is_keyed_by_pseudonym_and_holds_no_raw_ids() -> None:
    store: dict[bytes, bytes] = {}
    result = _run(_pipeline(), [_record(_view("alice@example.com", "i9"), 3, partition=4)], store)
    [(user, (partition, state))] = result.states.items()
    assert user == Pseudonymizer(KEY).one("alice@example.com").encode()
    assert partition == 4
    assert b"alice" not in user + state and b"s1" not in state
    assert UserFeatures.from_bytes(state).items == ["i9"]


def test_search_events_are_answered_in_search_context() -> None:
    search = orjson.dumps(
        {"event_id": "q1", "user_id": "u", "ts": 2.0, "type": "search", "query": "red shoes"}
    )
    result = _run(_pipeline(), [_record(search, 0)], {})
    assert orjson.loads(result.recommendations[0].value or b"")["context"] == "search"


def test_a_redelivered_batch_is_answered_again_but_not_counted_twice() -> None:
    pipeline, store = _pipeline(), {}
    records = [_record(_view("u", "a"), 0), _record(_view("u", "b"), 1)]
    _run(pipeline, records, store)
    again = _run(pipeline, records, store)
    assert len(again.recommendations) == 2 and again.redelivered == 2
    assert again.states == {}
    [state] = store.values()
    assert UserFeatures.from_bytes(state).items == ["a", "b"]


EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["u1", "u2", "u3"]), st.sampled_from(["a", "b", "c", "d"]), st.booleans()
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(EVENTS, st.integers(min_value=1, max_value=7))
def test_batched_processing_equals_per_event_processing(
    events: list[tuple[str, str, bool]], batch_size: int
) -> None:
    records = [
        _record(_view(user, item, f"e{i}") if valid else b"{oops", i, partition=0)
        for i, (user, item, valid) in enumerate(events)
    ]
    outputs = []
    for size in (1, batch_size):
        pipeline, store = _pipeline(), {}
        produced = []
        for start in range(0, len(records), size):
            result = _run(pipeline, records[start : start + size], store)
            produced += [r.value for r in result.recommendations + result.dead_letters]
        outputs.append((sorted(produced, key=repr), store))
    assert outputs[0] == outputs[1]
