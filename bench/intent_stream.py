"""Purchase intent inside the worker pipeline: the river model on DP releases vs the rate.

RetailRocket's sample is replayed in time order through ``EventPipeline`` (the
worker's per-batch step, in process, default privacy settings: hourly windows,
epsilon 1 per user and window for the shared counts, release threshold about
106). Both intent models learn only from the DP releases; before each event the
intent last predicted for that user is scored against whether the event is a
purchase (prequential log-loss). A constant at the sample's true purchase rate
is printed as a yardstick (it knows the answer in advance).

Run: ``.venv/bin/python bench/intent_stream.py`` (about a minute).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import orjson

from streams.ops.event_log import read_events
from streams.pipeline.build import build_pipeline
from streams.pipeline.pseudonyms import Pseudonymizer
from streams.pipeline.records import InputRecord
from streams.settings import Settings

DATA = Path("../shared/data/retailrocket-sample/events.csv.gz")
KEY = "bench-intent-stream-pseudonym-key"
BATCH = 500


def main() -> None:
    events = sorted(read_events(DATA), key=lambda e: float(e["ts"]))
    purchases = sum(e["type"] == "purchase" for e in events)
    days = (float(events[-1]["ts"]) - float(events[0]["ts"])) / 86_400
    pipeline = build_pipeline(
        Settings(pseudonym_key=KEY, text_search=False),
        pseudonymizer=Pseudonymizer(KEY.encode()),
        master_key=bytes(32),
    )
    # Refit after every window, as in production where windows end hourly (a replay ends
    # them in seconds, and the worker would refit at most every 5 s of wall time).
    pipeline.intent.cell.refit_seconds = 0.0
    states: dict[bytes, bytes] = {}
    keys: dict[bytes, bytes] = {}
    records = [
        InputRecord(str(e["user_id"]).encode(), orjson.dumps(e), "shop.events", 0, n, time.time())
        for n, e in enumerate(events)
    ]
    for start in range(0, len(records), BATCH):
        result = pipeline.process(
            records[start : start + BATCH], read_state=states.get, read_key=keys.get
        )
        result.changes.apply(states, keys)
    p = purchases / len(events)
    constant = -(p * math.log(p) + (1 - p) * math.log(1 - p))
    print(f"{len(events):,} events over {days:.1f} days, {purchases:,} purchases ({100 * p:.2f} %)")
    print(
        f"{pipeline.shared.released_windows} hourly windows released; the river model learned "
        f"{pipeline.intent.cell.weight:,.0f} released cases"
    )
    print(
        "| intent model | scored events | log-loss, all | log-loss, last 1,000 |\n|---|---|---|---|"
    )
    for name, loss in pipeline.intent.loss.items():
        snap = loss.snapshot()
        print(f"| {name} | {snap.n:,} | {snap.log_loss:.4f} | {snap.window_log_loss:.4f} |")
    print(f"| constant {100 * p:.2f} % (knows the answer) | {len(events):,} | {constant:.4f} | - |")
    print(f"served at the end: {'river' if pipeline.intent.river_serves() else 'rate'}")


if __name__ == "__main__":
    main()
