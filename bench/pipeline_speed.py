"""Events/s of the worker's per-batch step alone: ``EventPipeline.process`` in process, no Kafka.

The same RetailRocket events as ``bench/e2e_throughput.py`` (fresh user ids per
round), default privacy settings, the stream-learned baseline scorer (or, with
``--checkpoint``, a trained model's served ranker with the baseline as its
fallback, as a worker serves it), batches as the worker takes them, and the
tables as plain dicts, each user on one partition as a producer keys them. This
is the per-event cost the worker pays on top of the broker; ``--profile`` prints
where it goes (cProfile, by own time). ``--gc default`` runs it with CPython's
garbage-collector settings instead of the worker's (``settle_heap``);
``--event-time log`` keeps the log's own event times (see ``e2e_throughput.py``).

Run: ``.venv/bin/python bench/pipeline_speed.py --events 60000 [--checkpoint RUN] [--profile]``
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
import zlib
from pathlib import Path

import torch
from e2e_throughput import DATA, KEY, _events

from model.checkpoint import load_checkpoint
from model.serving.ranker import CheckpointScorer, ItemScorer
from streams.pipeline.build import build_pipeline
from streams.pipeline.pseudonyms import Pseudonymizer
from streams.pipeline.records import InputRecord
from streams.settings import Settings
from streams.worker.process import settle_heap


def run(records: list[InputRecord], batch: int, scorer: ItemScorer | None) -> float:
    """Seconds to process ``records`` in batches of ``batch`` through a fresh pipeline."""
    pipeline = build_pipeline(
        Settings(pseudonym_key=KEY, text_search=False),
        pseudonymizer=Pseudonymizer(KEY.encode()),
        master_key=bytes(32),
        scorer=scorer,
    )
    states: dict[bytes, bytes] = {}
    keys: dict[bytes, bytes] = {}
    started = time.perf_counter()
    for start in range(0, len(records), batch):
        result = pipeline.process(
            records[start : start + batch], read_state=states.get, read_key=keys.get
        )
        result.changes.apply(states, keys)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--batch", type=int, default=Settings().batch_max)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--checkpoint", type=Path, help="serve this model (one torch thread)")
    parser.add_argument("--profile", action="store_true", help="print the top functions")
    parser.add_argument(
        "--event-time", choices=["live", "log"], default="live", help="as e2e_throughput.py"
    )
    parser.add_argument(
        "--gc",
        choices=["settled", "default"],
        default="settled",
        help="the worker's garbage-collector settings (default) or CPython's",
    )
    args = parser.parse_args()
    scorer = None
    if args.checkpoint is not None:
        torch.set_num_threads(Settings().scoring_threads)
        scorer = CheckpointScorer(load_checkpoint(args.checkpoint))
    now = time.time()
    # Partitioned by key as a producer does, so each user stays on one partition.
    records = [
        InputRecord(key, value, "shop.events", zlib.crc32(key) % 8, n, now)
        for n, (key, value) in enumerate(
            _events(args.events, args.data, event_time=args.event_time)
        )
    ]
    if args.gc == "settled":
        settle_heap()
    if args.profile:
        profiler = cProfile.Profile()
        seconds = profiler.runcall(run, records, args.batch, scorer)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
    else:
        seconds = run(records, args.batch, scorer)
    print(
        f"{len(records):,} events in {seconds:.2f} s: {len(records) / seconds:,.0f} events/s, "
        f"{1e6 * seconds / len(records):.1f} µs per event (batches of {args.batch:,})"
    )


if __name__ == "__main__":
    main()
