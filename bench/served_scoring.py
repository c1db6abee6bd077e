"""What the served ranker costs a worker, beside its transformer alone, per batch of users.

The worker's own scorer (``CheckpointScorer``: transformer in bfloat16, then the
checkpoint's mix with session-kNN and recent items, top 20) on B users whose
histories are drawn from the test prefixes of the data set (a data folder or an
events file, as ``intentstream evaluate`` reads them): over its candidates (the
default), over every item (``INTENTSTREAM_FULL_RANKING``), and with the
checkpoint's ranker parts left out. Median seconds per call.

Run: ``.venv/bin/python bench/served_scoring.py --checkpoint runs/diginetica
--data ../shared/data/diginetica --threads 1``
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import statistics
import time
from pathlib import Path

import torch

from model.checkpoint import load_checkpoint
from model.evaluation.evaluate import load_protocol
from model.serving.scorers import CheckpointScorer

BATCH_SIZES = (1, 64, 256)


def measure(scorer: CheckpointScorer, histories: list[list[str]], seconds: float) -> float:
    """Median seconds of one ``score_many`` call over ``histories``."""
    scorer.score_many(histories, k=20)
    times = []
    started = time.perf_counter()
    while time.perf_counter() - started < seconds or len(times) < 3:
        t0 = time.perf_counter()
        scorer.score_many(histories, k=20)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/diginetica"))
    parser.add_argument("--seconds", type=float, default=3.0, help="per batch size")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a worker's: 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    checkpoint = load_checkpoint(args.checkpoint)
    scorers = {
        "served ranker, candidates": CheckpointScorer(checkpoint),
        "served ranker, every item": CheckpointScorer(checkpoint, full_ranking=True),
        "transformer alone": CheckpointScorer(dataclasses.replace(checkpoint, ranking=None)),
    }
    prefixes = [prefix for prefix, _ in load_protocol(args.data).cases]
    rng = random.Random(0)
    weights = checkpoint.ranking.weights if checkpoint.ranking is not None else None
    print(f"mix: {weights}, {len(checkpoint.vocab) - 1:,} items")
    print("| scorer | batch | ms per call | users/s |\n|---|---|---|---|")
    for size in BATCH_SIZES:
        histories = rng.sample(prefixes, size)
        for name, scorer in scorers.items():
            seconds = measure(scorer, histories, args.seconds)
            print(f"| {name} | {size} | {1000 * seconds:.1f} | {size / seconds:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
