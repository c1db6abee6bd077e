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
``--campaigns N`` loads N sponsored-item campaigns over the log's most viewed items
(answers hold auctions when the served model has a calibrator: ``--checkpoint``).

Run: ``.venv/bin/python bench/pipeline_speed.py --events 60000 [--checkpoint RUN] [--campaigns 200]
[--profile]``
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import time
import zlib
from collections import Counter
from pathlib import Path

import orjson
import torch
from e2e_throughput import DATA, KEY, _events

from model.checkpoint import load_checkpoint
from model.serving.scorers import CheckpointScorer, ItemScorer
from streams.pipeline.ads.campaigns import Campaign
from streams.pipeline.build import build_pipeline
from streams.pipeline.pseudonyms import Pseudonymizer
from streams.pipeline.records import InputRecord
from streams.settings import Settings
from streams.worker.process import settle_heap


def run(
    records: list[InputRecord],
    batch: int,
    scorer: ItemScorer | None,
    campaigns: list[Campaign],
) -> tuple[float, Counter[str]]:
    """Seconds to process ``records`` in batches of ``batch`` through a fresh pipeline, and
    its answers' auctions by outcome."""
    pipeline = build_pipeline(
        Settings(pseudonym_key=KEY, text_search=False),
        pseudonymizer=Pseudonymizer(KEY.encode()),
        master_key=bytes(32),
        scorer=scorer,
    )
    for campaign in campaigns:
        pipeline.campaigns.upsert(campaign)
    states: dict[bytes, bytes] = {}
    keys: dict[bytes, bytes] = {}
    auctions: Counter[str] = Counter()
    started = time.perf_counter()
    for start in range(0, len(records), batch):
        result = pipeline.process(
            records[start : start + batch], read_state=states.get, read_key=keys.get
        )
        result.changes.apply(states, keys)
        auctions.update(result.stats.ads_auctions)
    return time.perf_counter() - started, auctions


def bench_campaigns(
    records: list[InputRecord], n: int, *, per_campaign: int = 20
) -> list[Campaign]:
    """``n`` campaigns of ``per_campaign`` of the log's most viewed items each, bids of 0.05 to
    2.00 a click or a purchase (seeded), budgets that never run out."""
    views = Counter(orjson.loads(r.value or b"{}").get("item_id") for r in records)
    popular = [item for item, _ in views.most_common(n * per_campaign + 1) if item]
    draw = random.Random(0)
    return [
        Campaign(
            f"c{k}",
            "bench",
            tuple(popular[k::n]),
            draw.choice(["click", "purchase"]),
            round(draw.uniform(0.05, 2.0), 2),
            1e12,
            0.0,
            None,
        )
        for k in range(n)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--batch", type=int, default=Settings().batch_max)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--checkpoint", type=Path, help="serve this model (one torch thread)")
    parser.add_argument("--profile", action="store_true", help="print the top functions")
    parser.add_argument("--campaigns", type=int, default=0, help="sponsored-item campaigns")
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
    campaigns = bench_campaigns(records, args.campaigns) if args.campaigns else []
    if args.gc == "settled":
        settle_heap()
    if args.profile:
        profiler = cProfile.Profile()
        seconds, auctions = profiler.runcall(run, records, args.batch, scorer, campaigns)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
    else:
        seconds, auctions = run(records, args.batch, scorer, campaigns)
    print(
        f"{len(records):,} events in {seconds:.2f} s: {len(records) / seconds:,.0f} events/s, "
        f"{1e6 * seconds / len(records):.1f} µs per event (batches of {args.batch:,})"
    )
    if campaigns:
        print(f"{len(campaigns)} campaigns; auctions: {dict(auctions.most_common())}")


if __name__ == "__main__":
    main()
