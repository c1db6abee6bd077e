"""The agent's pure per-batch step: outputs, dead letters, state, batching invariance."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.serving.baseline import BASELINE_VERSION
from streams.errors import StateDecryptionError
from streams.pipeline.answers import with_user_id
from streams.pipeline.batch import BatchResult, EventPipeline
from streams.pipeline.build import build_pipeline
from streams.pipeline.crypto import DLQ_PURPOSE, RecordSealer, StateCipher
from streams.pipeline.intent import INTENT_TRIAL
from streams.pipeline.ledger import LedgerSealer, UserLedger
from streams.pipeline.pseudonyms import Pseudonymizer
from streams.pipeline.records import InputRecord
from streams.pipeline.state import UserState
from streams.settings import Settings

KEY = b"p" * 32
MASTER = bytes(range(32))
SETTINGS = Settings(pseudonym_key="p" * 32, top_k=3)
# Windows of 10 s and an epsilon so large that the DP noise is 0 (but with probability
# ~exp(-1e5)): the shared counts are released exactly, so outputs can be checked exactly.
EXACT = Settings(
    pseudonym_key="p" * 32,
    top_k=3,
    privacy_window_seconds=10.0,
    privacy_epsilon_per_window=1e6,
    shared_counts_epsilon=1e6,
)
SEALER = RecordSealer(MASTER, purpose=DLQ_PURPOSE)


@dataclass
class Tables:
    """The worker's two tables: sealed states and sealed ledgers, by pseudonym."""

    states: dict[bytes, bytes] = field(default_factory=dict)
    keys: dict[bytes, bytes] = field(default_factory=dict)

    def ledger(self, user: str, master: bytes = MASTER) -> UserLedger:
        """A user's ledger, opened with the master key."""
        pseudonym = Pseudonymizer(KEY).one(user).encode()
        return LedgerSealer(master).open(pseudonym, self.keys[pseudonym])

    def plain(self, user: str, master: bytes = MASTER) -> UserState:
        """A user's state, opened with the master key."""
        pseudonym = Pseudonymizer(KEY).one(user).encode()
        wrapped = self.ledger(user, master).wrapped_key
        assert wrapped is not None
        opened = StateCipher(master).open(pseudonym, wrapped, self.states[pseudonym])
        return UserState.from_bytes(opened)


def _pipeline(master: bytes = MASTER, settings: Settings = EXACT) -> EventPipeline:
    return build_pipeline(
        settings, pseudonymizer=Pseudonymizer(KEY), master_key=master, clock=lambda: 100.0
    )


def _record(
    value: bytes | None, offset: int, *, partition: int = 0, timestamp: float = 99.5
) -> InputRecord:
    """An event record keyed by its user_id (b"k" when the value names none)."""
    try:
        key = orjson.loads(value or b"")["user_id"].encode()
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        key = b"k"
    return InputRecord(
        key=key,
        value=value,
        topic="shop.events",
        partition=partition,
        offset=offset,
        timestamp=timestamp,
    )


def _view(user: str, item: str, event_id: str = "e", ts: float = 1.0) -> bytes:
    return orjson.dumps(
        {
            "event_id": event_id,
            "user_id": user,
            "ts": ts,
            "type": "view",
            "item_id": item,
            "session_id": "s1",
        }
    )


def _run(pipeline: EventPipeline, records: list[InputRecord], store: Tables) -> BatchResult:
    result = pipeline.process(records, read_state=store.states.get, read_key=store.keys.get)
    result.changes.apply(store.states, store.keys)
    return result


def test_one_recommendation_per_accepted_event_in_the_design_format() -> None:
    views = [("u1", "a", 1.0), ("u1", "b", 2.0), ("u3", "a", 3.0), ("u3", "b", 4.0)]
    views += [("u2", "a", 5.0), ("u2", "c", 12.0)]
    records = [_record(_view(u, i, f"e{n}", ts), n) for n, (u, i, ts) in enumerate(views)]
    result = _run(_pipeline(), records, Tables())
    assert [r.key for r in result.recommendations] == [b"u1", b"u1", b"u3", b"u3", b"u2", b"u2"]
    # Before the first window's release (at the event of ts 12) a user sees only their own items.
    for rec, (user, _, _) in zip(result.recommendations[:5], views, strict=False):
        own = {item for u, item, _ in views if u == user}
        assert {i["item_id"] for i in orjson.loads(rec.value or b"")["items"]} <= own
    last = orjson.loads(result.recommendations[-1].value or b"")
    items = last.pop("items")
    intent = last.pop("purchase_intent")
    assert last == {
        "user_id": "u2",
        "event_id": "e5",
        "ts": 100.0,
        "context": "browse",
        "model_version": BASELINE_VERSION,
        "latency_ms": 500.0,
    }
    # Window 0 taught a -> b (two users): b leads for a user whose 2nd-latest item is a;
    # the user's own items follow.
    assert [item["item_id"] for item in items] == ["b", "c", "a"]
    assert items[0]["score"] == round(0.5 / 1.5, 6)  # a is the 2nd-latest item: weight 0.5
    assert 0 < intent < 1
    assert result.dead_letters == []


def test_bad_records_become_dead_letters_with_original_bytes_and_position() -> None:
    bad = b'{"event_id": "e1", "user_id": 7'
    nameless = _record(bad, 5, partition=2)._replace(key=None)  # names no user
    result = _run(_pipeline(), [nameless, _record(_view("u", "i"), 6)], Tables())
    assert len(result.recommendations) == 1
    [letter] = result.dead_letters
    assert letter.topic == SETTINGS.dlq_topic
    assert letter.key is None and b"user_id" not in (letter.value or b"")
    assert SEALER.open(letter.value or b"") == (None, bad)
    assert dict(letter.headers) == {
        "reason": b"invalid_json",
        "detail": letter.headers[1][1],
        "source_topic": b"shop.events",
        "source_partition": b"2",
        "source_offset": b"5",
    }


def test_state_is_keyed_by_pseudonym_and_holds_no_raw_ids() -> None:
    store = Tables()
    item = "item-that-must-stay-sealed"  # long: a short id can occur in ciphertext by chance
    result = _run(_pipeline(), [_record(_view("alice@example.com", item), 3, partition=4)], store)
    [(user, (partition, sealed))] = result.changes.states.items()
    [(key_user, (key_partition, wrapped))] = result.changes.keys.items()
    assert user == key_user == Pseudonymizer(KEY).one("alice@example.com").encode()
    assert partition == key_partition == 4
    assert b"alice" not in user + (sealed or b"") + (wrapped or b"")
    assert item.encode() not in (sealed or b"")  # sealed, not plain
    assert store.plain("alice@example.com").items == [item]


def test_search_events_are_answered_in_search_context() -> None:
    search = orjson.dumps(
        {"event_id": "q1", "user_id": "u", "ts": 2.0, "type": "search", "query": "red shoes"}
    )
    result = _run(_pipeline(), [_record(search, 0)], Tables())
    assert orjson.loads(result.recommendations[0].value or b"")["context"] == "search"


def test_a_redelivered_batch_is_neither_answered_nor_counted_twice() -> None:
    pipeline, store = _pipeline(), Tables()
    records = [_record(_view("u", "a"), 0), _record(_view("u", "b"), 1)]
    _run(pipeline, records, store)
    # After a crash the last batch comes again, plus a new event: only that one is answered.
    again = _run(pipeline, [*records, _record(_view("u", "c", "e3"), 2)], store)
    answered = [orjson.loads(r.value or b"")["event_id"] for r in again.recommendations]
    assert answered == ["e3"] and again.stats.redelivered == 2
    assert store.plain("u").items == ["a", "b", "c"]


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
    # Event time runs 3 s per event, so the 10 s windows are released along the way.
    records = [
        _record(_view(user, item, f"e{i}", ts=3.0 * i), i)
        if valid
        else _record(b"{oops", i)._replace(key=None)  # a letter sealed under the master key
        for i, (user, item, valid) in enumerate(events)
    ]
    outputs = []
    for size in (1, batch_size):
        pipeline, store = _pipeline(), Tables()
        produced = []
        for start in range(0, len(records), size):
            result = _run(pipeline, records[start : start + size], store)
            produced += [r.value for r in result.recommendations]
            produced += [SEALER.open(r.value or b"") for r in result.dead_letters]
        states = {user: store.plain(user) for user in ("u1", "u2", "u3") if _known(store, user)}
        outputs.append((sorted(produced, key=repr), states))
    assert outputs[0] == outputs[1]


def _known(store: Tables, user: str) -> bool:
    return Pseudonymizer(KEY).one(user).encode() in store.states


def _erase(
    user: str | None,
    request_id: str,
    offset: int,
    body: bytes | None = None,
    *,
    timestamp: float = 99.6,
) -> InputRecord:
    return InputRecord(
        key=user.encode() if user is not None else None,
        value=body or orjson.dumps({"action": "erase", "request_id": request_id}),
        topic=SETTINGS.privacy_requests_topic,
        partition=0,
        offset=offset,
        timestamp=timestamp,
    )


def test_erasure_deletes_state_and_key_and_the_next_event_starts_empty() -> None:
    pipeline, store = _pipeline(), Tables()
    _run(pipeline, [_record(_view("u", "a"), 0), _record(_view("v", "b"), 1)], store)
    old_sealed = dict(store.states)
    result = _run(pipeline, [_erase("u", "r1", 0)], store)
    user = Pseudonymizer(KEY).one("u").encode()
    assert result.changes.states == {user: (0, None)} and user not in store.states
    ledger = store.ledger("u")  # no key: every sealed copy is shredded; the erasure's time kept
    assert ledger.wrapped_key is None and ledger.erased_before_ms == 99_600
    [audit] = result.audit
    assert audit.topic == SETTINGS.privacy_audit_topic and audit.key == b"r1"
    outcome = orjson.loads(audit.value or b"")
    assert outcome["outcome"] == "erased" and outcome["latency_ms"] == 400.0
    assert set(outcome) == {"request_id", "action", "outcome", "ts", "latency_ms"}  # no user id

    _run(pipeline, [_record(_view("u", "c"), 2, timestamp=99.7)], store)
    assert store.plain("u").items == ["c"]  # starts from empty state, under a new key
    cipher = StateCipher(MASTER)
    with pytest.raises(StateDecryptionError):  # the old record does not open with the new key
        cipher.open(user, store.ledger("u").wrapped_key or b"", old_sealed[user])
    assert store.plain("v").items == ["b"]  # other users untouched


def test_erasure_in_the_middle_of_a_batch_applies_in_order() -> None:
    pipeline, store = _pipeline(), Tables()
    records = [
        _record(_view("u", "a"), 0),
        _erase("u", "r1", 0),
        _record(_view("u", "b"), 1, timestamp=99.7),
    ]
    result = _run(pipeline, records, store)
    assert orjson.loads(result.audit[0].value or b"")["outcome"] == "erased"
    assert store.plain("u").items == ["b"]
    again = _run(pipeline, [_erase("nobody", "r2", 1)], store)
    assert orjson.loads(again.audit[0].value or b"")["outcome"] == "no_state"


def test_bad_privacy_requests_go_to_the_dead_letter_topic() -> None:
    result = _run(
        _pipeline(),
        [
            _erase(None, "r1", 0),
            _erase("u", "r2", 1, body=b'{"action": "forget-me", "request_id": "r2"}'),
            _erase("u", "r3", 2, body=b'{"action": "erase"}'),
        ],
        Tables(),
    )
    assert result.audit == [] and result.changes.states == {}
    reasons = [dict(letter.headers)["reason"] for letter in result.dead_letters]
    assert reasons == [b"key_mismatch", b"invalid_value", b"missing_field"]


def test_state_sealed_under_another_master_key_reads_as_a_new_user() -> None:
    store = Tables()
    _run(_pipeline(), [_record(_view("u", "a"), 0)], store)
    other = _pipeline(master=bytes(32))
    _run(other, [_record(_view("u", "b"), 1)], store)
    assert store.plain("u", master=bytes(32)).items == ["b"]


def test_a_rare_item_is_never_released_to_other_users() -> None:
    settings = SETTINGS.model_copy(update={"privacy_window_seconds": 10.0})
    pipeline = _pipeline(settings=settings)
    crowd = [(f"user{n}", "popular", 1.0 + n / 100) for n in range(300)]
    secret = [("loner", "secret-item", 2.0), ("loner", "popular", 2.5)]
    later = [("late", "popular", 15.0)]
    records = [
        _record(_view(u, i, f"e{n}", ts), n) for n, (u, i, ts) in enumerate(crowd + secret + later)
    ]
    result = _run(pipeline, records, Tables())
    last = orjson.loads(result.recommendations[-1].value or b"")
    assert pipeline.shared.released_windows == 1
    assert [item["item_id"] for item in last["items"]] == ["popular"]  # released, noisy count
    assert not pipeline.ranker.fallback.knows("secret-item")  # below the DP threshold


def test_contributions_are_bounded_and_charged_once_per_window() -> None:
    settings = EXACT.model_copy(
        update={"privacy_epsilon_per_window": 1e6, "shared_counts_epsilon": 1e6}
    )
    pipeline, store = _pipeline(settings=settings), Tables()
    # Two users view the same 8 distinct items in one window.
    views = [(u, f"i{n}", 1.0 + n) for n in range(8) for u in ("u", "w")]
    records = [_record(_view(u, i, f"e{n}", ts), n) for n, (u, i, ts) in enumerate(views)]
    records.append(_record(_view("v", "x", "late", 25.0), 9))
    _run(pipeline, records, store)
    budget, contributions = store.plain("u").privacy_budget, store.plain("u").contributions
    # Bounded to max_items keys per window: two items and the one purchase-rate slot.
    assert contributions[1] == ["i0", "i1", "\x00intent"]
    assert budget[1] == 1_000_000 * 1_000_000  # charged once for the window, in micro-epsilons
    assert [item for item in ["i0", "i1", "i2", "i3"] if pipeline.ranker.fallback.knows(item)] == [
        "i0",
        "i1",
    ]


def test_each_event_is_scored_against_the_users_last_list_before_learning() -> None:
    pipeline, store = _pipeline(), Tables()
    views = [("u1", "a", 1.0), ("u1", "a", 2.0), ("u1", "z", 3.0), ("u2", "a", 4.0)]
    records = [_record(_view(u, i, f"e{n}", ts), n) for n, (u, i, ts) in enumerate(views)]
    for record in records:  # a list is sent at the end of its batch, kept in the user's state
        _run(pipeline, [record], store)
    # u1's 1st and u2's only event have no earlier list; "a" was in u1's list, "z" was not.
    snapshot = pipeline.monitor.prequential.snapshot()
    assert (snapshot.n, snapshot.n_skipped, snapshot.hr) == (2, 2, 0.5)
    assert store.plain("u1").last_emitted == ["z", "a"]  # own items, most recent first


def test_an_event_that_came_before_the_answer_to_the_users_previous_one_is_not_checked() -> None:
    pipeline, store = _pipeline(), Tables()
    _run(pipeline, [_record(_view("u1", "a", "e0", 1.0), 0)], store)  # u1 is sent ["a"]
    # One batch: "b" is checked against ["a"]; "b" again came before the answer to the
    # first "b", so the stale ["a"] would count a miss the user was never shown.
    views = [("u1", "b", 2.0), ("u1", "b", 3.0)]
    batch = [_record(_view(u, i, f"e{n}", ts), n) for n, (u, i, ts) in enumerate(views, start=1)]
    _run(pipeline, batch, store)
    snapshot = pipeline.monitor.prequential.snapshot()
    assert (snapshot.n, snapshot.n_skipped, snapshot.hr) == (1, 2, 0.0)
    assert store.plain("u1").last_emitted == ["b", "a"]  # set again once the batch is answered


class _WrongScorer:
    """A model version that always recommends ``k`` items nobody wants (a full list: a
    shorter one would be topped up with the baseline's items)."""

    version = "seq-bad"
    epsilon = math.inf  # not DP-trained

    def knows(self, item_id: str) -> bool:
        return True

    def score_many(self, histories: Any, /, *, k: int) -> list[list[tuple[str, float]]]:
        return [[(f"nobody-wants-{n}", 1.0 - n / k) for n in range(k)] for _ in histories]


def test_a_version_whose_online_hits_drop_is_rejected_and_the_previous_one_restored() -> None:
    settings = EXACT.model_copy(update={"probation_events": 5})
    pipeline, store = _pipeline(settings=settings), Tables()
    users = [f"u{n}" for n in range(5)]
    views = [(u, "a", float(n)) for n in range(4) for u in users]  # own items: "a" always hits
    first = [_record(_view(u, i, f"e{n}", ts), n) for n, (u, i, ts) in enumerate(views)]
    for start in range(0, len(first), 5):  # a batch per round: lists are set at batch end
        _run(pipeline, first[start : start + 5], store)
    assert pipeline.monitor.prequential.snapshot().window_hr == 1.0
    pipeline.use_scorer(_WrongScorer(), probation=True)
    later = [(u, "a", 10.0 + n) for n in range(3) for u in users]
    records = [_record(_view(u, i, f"x{n}", ts), 100 + n) for n, (u, i, ts) in enumerate(later)]
    answered, failures, epsilons = [], [], []
    for start in range(0, len(records), 5):  # a batch per round: lists are set at batch end
        result = _run(pipeline, records[start : start + 5], store)
        answered += result.recommendations
        failures += result.probation_failures
        epsilons.append(result.stats.serving_epsilon)
    assert [f.version for f in failures] == ["seq-bad"] and "HR@10 fell" in failures[0].reason
    assert failures[0].restored == pipeline.ranker.fallback.version
    assert pipeline.ranker.primary is pipeline.ranker.fallback
    versions = [orjson.loads(r.value or b"")["model_version"] for r in answered]
    assert versions[:5] == ["seq-bad"] * 5 and set(versions[10:]) == {BASELINE_VERSION}
    # The served epsilon the metrics show follows the swap back.
    assert epsilons[0] == math.inf and math.isnan(epsilons[-1])


def _event(user: str, kind: str, event_id: str, ts: float, session: str) -> bytes:
    return orjson.dumps(
        {
            "event_id": event_id,
            "user_id": user,
            "ts": ts,
            "type": kind,
            "item_id": "i",
            "session_id": session,
        }
    )


def test_the_river_intent_model_learns_from_released_counts_and_is_scored() -> None:
    pipeline, store = _pipeline(), Tables()
    pipeline.intent.cell.min_weight = 100
    # Window [0, 10): 300 carts followed by a purchase, 300 views followed by a view.
    journeys = [(f"b{n}", ("add_to_cart", "purchase")) for n in range(300)]
    journeys += [(f"v{n}", ("view", "view")) for n in range(300)]
    events = [(u, kind, 1.0 + step) for u, kinds in journeys for step, kind in enumerate(kinds)]
    # Window [10, 20): releases the first, then fresh users ask for their intent.
    events += [("cart", "add_to_cart", 11.0), ("look", "view", 11.5), ("cart", "purchase", 12.0)]
    records = [
        _record(_event(u, kind, f"e{n}", ts, f"s-{u}"), n) for n, (u, kind, ts) in enumerate(events)
    ]
    result = _run(pipeline, records, store)
    served = [orjson.loads(r.value or b"")["purchase_intent"] for r in result.recommendations]
    assert pipeline.intent.cell.weight >= 100  # the river model learned the released window
    river_look, rate_look = store.plain("look").last_intent
    assert river_look < 0.5 < pipeline.intent.cell.predict("3.0.1")  # "3.0.1": one cart
    # The river model has no track record yet: the purchase rate is served.
    assert not pipeline.intent.river_serves()
    assert served[-2] == pytest.approx(rate_look, abs=1e-6)
    # The purchase after the cart was scored against the intent predicted before it.
    assert pipeline.intent.loss["river"].n == 1
    assert pipeline.intent.loss["river"].get()["log_loss"] < 0.69
    assert pipeline.intent.loss["rate"].n == 600 + 1


def test_the_river_intent_is_served_once_its_log_loss_beats_the_rate() -> None:
    pipeline = _pipeline()
    river, rate = pipeline.intent.loss["river"], pipeline.intent.loss["rate"]
    for n in range(INTENT_TRIAL):
        river.update_one(0.1, n % 10 == 0)
        rate.update_one(0.5, n % 10 == 0)
    assert pipeline.intent.river_serves()
    for n in range(1_000):
        river.update_one(0.9, n % 10 == 0)  # the river model goes wrong
    assert not pipeline.intent.river_serves()


def test_a_budget_smaller_than_the_charge_refuses_every_contribution() -> None:
    settings = SETTINGS.model_copy(
        update={"privacy_epsilon_per_window": 0.5, "shared_counts_epsilon": 1.0}
    )
    pipeline, store = _pipeline(settings=settings), Tables()
    views = [("u1", "a", 1.0), ("u1", "b", 2.0), ("u2", "a", 3.0)]
    _run(
        pipeline,
        [_record(_view(u, i, f"e{n}", ts), n) for n, (u, i, ts) in enumerate(views)],
        store,
    )
    assert pipeline.shared.refused == 3
    assert pipeline.shared.charged_units == 0
    assert store.plain("u1").contributions[1] == []


def test_a_window_stays_open_until_every_partition_has_passed_it() -> None:
    """One partition's events run ahead of another's: the slower one's still count.

    Windows are 10 s here. Partition 0 reaches ts 15 (window 10) while partition 1 is
    still at ts 2 to 8 (window 0); closing window 0 at partition 0's ts 15 would drop
    partition 1's contributions to it.
    """
    pipeline, store = _pipeline(), Tables()
    ahead = [_record(_view(f"a{n}", "x", f"a{n}", ts=1.0 + 7 * n), n) for n in range(3)]
    behind = [
        _record(_view(f"b{n}", "y", f"b{n}", ts=2.0 + 3 * n), n, partition=1) for n in range(3)
    ]
    _run(pipeline, [*ahead, *behind], store)
    assert pipeline.shared.dropped == 0 and pipeline.shared.released_windows == 0
    _run(pipeline, [_record(_view("b9", "y", "b9", ts=12.0), 3, partition=1)], store)
    assert pipeline.shared.released_windows == 1 and pipeline.shared.dropped == 0
    popular = [item for item, _ in pipeline.ranker.fallback.score_many([[]], k=2)[0]]
    assert popular == ["y", "x"]  # partition 1's three views of y made the release


def test_an_idle_partition_stops_holding_the_windows_open() -> None:
    wall = [100.0]
    pipeline = build_pipeline(
        EXACT, pseudonymizer=Pseudonymizer(KEY), master_key=MASTER, clock=lambda: wall[0]
    )
    store = Tables()
    _run(pipeline, [_record(_view("b", "y", "b", ts=2.0), 0, partition=1)], store)
    wall[0] += 10.0
    _run(pipeline, [_record(_view("a", "x", "a", ts=15.0), 0)], store)
    assert pipeline.shared.released_windows == 0  # partition 1 may still send window 0
    wall[0] += 100.0  # partition 1 has said nothing more: partition 0 alone moves time
    _run(pipeline, [_record(_view("a", "x", "a2", ts=16.0), 1)], store)
    assert pipeline.shared.released_windows == 1


# ------------------------------------------------------------ latest lists and search


def _pseudonym(user: str) -> bytes:
    return Pseudonymizer(KEY).one(user).encode()


@given(st.text(max_size=40), st.text(min_size=1, max_size=40), st.floats(0, 1e10))
def test_a_body_with_its_user_id_is_the_whole_recommendation(
    user_id: str, event_id: str, ts: float
) -> None:
    body = orjson.dumps({"event_id": event_id, "ts": ts, "items": []})
    whole = orjson.dumps({"user_id": user_id, "event_id": event_id, "ts": ts, "items": []})
    assert with_user_id(user_id, body) == whole


def test_each_users_latest_list_is_their_last_recommendation_without_their_id() -> None:
    records = [
        _record(_view("u1", "a", "e0"), 0),
        _record(_view("u2", "b", "e1"), 1, partition=3),
        _record(_view("u1", "c", "e2"), 2),
    ]
    result = _run(_pipeline(), records, Tables())
    latest = {user: result.latest[_pseudonym(user)] for user in ("u1", "u2")}
    by_event = {orjson.loads(r.value or b"")["event_id"]: r.value for r in result.recommendations}
    assert latest["u1"][0] == 0 and latest["u2"][0] == 3
    for user, event in (("u1", "e2"), ("u2", "e1")):
        body = latest[user][1]
        assert body is not None and b"user_id" not in body
        assert with_user_id(user, body) == by_event[event]
    assert len(result.latest) == 2


def test_an_erasure_leaves_no_list_even_for_an_event_answered_before_it_in_the_batch() -> None:
    pipeline, store = _pipeline(), Tables()
    before = _record(_view("u", "a", "e0"), 0, timestamp=99.5)
    result = _run(pipeline, [before, _erase("u", "r1", 1, timestamp=99.6)], store)
    assert len(result.recommendations) == 1  # answered before the request was read
    assert result.latest[_pseudonym("u")] == (0, None)
    after = _record(_view("u", "b", "e1"), 2, timestamp=99.7)
    again = _run(pipeline, [_erase("u", "r1", 1, timestamp=99.6), after], store)
    body = again.latest[_pseudonym("u")][1]  # the redelivered request changes nothing
    assert body is not None and orjson.loads(body)["event_id"] == "e1"


def test_an_event_after_the_erasure_in_the_same_batch_has_a_list() -> None:
    records = [
        _erase("u", "r1", 0, timestamp=99.6),
        _record(_view("u", "b", "e1"), 1, timestamp=99.7),
    ]
    result = _run(_pipeline(), records, Tables())
    body = result.latest[_pseudonym("u")][1]
    assert body is not None and orjson.loads(body)["event_id"] == "e1"


def test_search_ranks_with_the_users_history_as_a_search_event_would_and_writes_nothing() -> None:
    pipeline, store = _pipeline(), Tables()
    _run(pipeline, [_record(_view("u", "a", "e0"), 0), _record(_view("u", "b", "e1"), 1)], store)
    before = (dict(store.states), dict(store.keys))
    answer, intent = pipeline.search(
        _pseudonym("u"), "shoes", read_state=store.states.get, read_key=store.keys.get
    )
    assert (dict(store.states), dict(store.keys)) == before
    search = orjson.dumps(
        {"event_id": "s", "user_id": "u", "ts": 2.0, "type": "search", "query": "shoes"}
    )
    [event] = _run(pipeline, [_record(search, 2)], store).recommendations
    expected = orjson.loads(event.value or b"")
    assert answer.context == expected["context"] == "search"
    assert [[i, s] for i, s in answer.items] == [
        [i["item_id"], i["score"]] for i in expected["items"]
    ]
    assert {item for item, _ in answer.items} >= {"a", "b"}
    assert 0.0 <= intent <= 1.0


def test_search_for_an_erased_user_uses_no_history() -> None:
    pipeline, store = _pipeline(), Tables()
    _run(pipeline, [_record(_view("u", "a", "e0"), 0), _erase("u", "r1", 1)], store)
    answer, _ = pipeline.search(
        _pseudonym("u"), "shoes", read_state=store.states.get, read_key=store.keys.get
    )
    assert "a" not in {item for item, _ in answer.items}
