"""100,000 random and mutated events through the worker's pipeline: each lands exactly once.

Every invalid record goes to the dead-letter topic with a reason, every valid one
is answered, and nothing raises. A ``processing_error`` reason would mean a bug
met on odd input (the pipeline catches it so a worker survives), so there must be none.
"""

from __future__ import annotations

import time
from collections import Counter

import orjson

from streams.pipeline.build import build_pipeline
from streams.pipeline.pseudonyms import Pseudonymizer
from streams.pipeline.records import InputRecord
from streams.pipeline.validation import Reason
from streams.settings import Settings
from tests.fuzz import fuzzed_records

KEY = "fuzz-test-pseudonym-key-0123456789"
N_RECORDS = 100_000
BATCH = 2_000


def test_every_fuzzed_record_is_answered_or_dead_lettered_once() -> None:
    pipeline = build_pipeline(
        Settings(pseudonym_key=KEY, text_search=False),
        pseudonymizer=Pseudonymizer(KEY.encode()),
        master_key=bytes(32),
    )
    made = list(fuzzed_records(N_RECORDS, seed=7))
    records = [
        InputRecord(key, value, "shop.events", 0, offset, time.time())
        for offset, (key, value, _) in enumerate(made)
    ]
    states: dict[bytes, bytes] = {}
    keys: dict[bytes, bytes] = {}
    answered: Counter[str] = Counter()
    dead: dict[int, str] = {}
    for start in range(0, len(records), BATCH):
        result = pipeline.process(
            records[start : start + BATCH], read_state=states.get, read_key=keys.get
        )
        result.changes.apply(states, keys)
        answered.update(orjson.loads(r.value or b"")["event_id"] for r in result.recommendations)
        for letter in result.dead_letters:
            headers = {name: value.decode() for name, value in letter.headers}
            assert headers["detail"], headers
            offset = int(headers["source_offset"])
            assert offset not in dead, f"record {offset} dead-lettered twice"
            dead[offset] = headers["reason"]

    reasons = Counter(dead.values())
    assert Reason.PROCESSING_ERROR.value not in reasons, reasons
    assert set(reasons) <= {reason.value for reason in Reason}
    accepted = Counter(
        orjson.loads(value or b"")["event_id"]
        for offset, (_, value, _) in enumerate(made)
        if offset not in dead
    )
    assert answered == accepted  # every accepted record answered once, nothing else
    unmutated = {offset for offset, (_, _, seed) in enumerate(made) if seed}
    assert not unmutated & set(dead)
    assert sum(answered.values()) + len(dead) == N_RECORDS
    assert 0.3 < len(dead) / N_RECORDS < 0.6  # the mix really holds both kinds
