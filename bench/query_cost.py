"""What search queries cost a worker: encoding with the query budget off and on, and ranking.

Encodes short, 1,024-character and 64 KiB queries with :class:`TextEncoder` (one
BLAS thread, as the worker runs it), alone and as a batch of 2,000 identical
queries, raw ("off") and through the worker's :class:`TextBudget` at the default
settings ("on"). A raw batch that would take longer than ``--max-seconds`` is
timed on a sample and scaled up (marked "est."). U+FDFA is the worst code point
found for the encoder: NFKC turns it into 18 characters and 5 tokens.

``--catalogue N ...`` also times ranking a batch of 2,000 searches against N
random title vectors (``ContextRanker.rank_many`` with the stream baseline, the
query vectors given), the part of a search's cost that grows with the catalogue.

Run: ``.venv/bin/python bench/query_cost.py [--catalogue 10000 100000 400000]``
"""

from __future__ import annotations

import argparse
import functools
import random
import statistics
import time
import unicodedata
from collections.abc import Callable, Sequence

import numpy as np

from model.serving.baseline import CooccurrenceRecommender
from model.serving.catalogue import FloatArray, TextCatalogue
from model.serving.ranker import ContextRanker, RankRequest
from model.serving.text import TextBudget, TextEncoder
from streams.settings import Settings

BATCH = 2_000
WORDS = ("red", "running", "shoes", "stainless", "steel", "kettle", "wireless", "yoga", "mat")


def queries() -> dict[str, str]:
    """Query kinds by name, from a seeded generator."""
    rng = random.Random(0)

    def words(n: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(n // 4))[:n]

    return {
        "short (17 chars)": "red running shoes",
        "1,024 chars, English words": words(1024),
        "1,024 chars, random letters": "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=1024)),
        "1,024 chars, CJK": "".join(chr(rng.randint(0x4E00, 0x9FFF)) for _ in range(1024)),
        "1,024 chars, U+FDFA": "\ufdfa" * 1024,
        "64 KiB, English words": words(65_000),
    }


def seconds(call: Callable[[], object], *, repeat: int) -> float:
    """Median wall time of ``call``."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def batch_seconds(encode: Callable[[Sequence[str]], object], query: str, *, cap: float) -> str:
    """Seconds to encode ``BATCH`` copies of ``query``; scaled from a sample past ``cap``.

    Only the raw encoder is scaled: the budget makes a batch cost less than its sum.
    """
    one = seconds(lambda: encode([query]), repeat=3)
    sample = BATCH if one * BATCH <= cap else max(1, int(cap / one))
    took = seconds(lambda: encode([query] * sample), repeat=1) * BATCH / sample
    return f"{took:.2f}" + ("" if sample == BATCH else " est.")


def encoding(budget: TextBudget, *, max_seconds: float) -> None:
    """Print the encoding table: per query and per batch, budget off and on."""
    encoder = TextEncoder()
    raw, bounded = encoder.encode_many, budget.bind(encoder.encode_many)
    print(
        f"max_query_chars={budget.max_chars}, max_query_chars_per_batch={budget.max_batch_chars}, "
        f"batch of {BATCH:,}\n"
        "| query | NFKC chars | ms per query, off | on | s per batch, off | on |\n"
        "|---|---|---|---|---|---|"
    )
    for name, query in queries().items():
        per_query = [
            1000 * seconds(functools.partial(e, [query]), repeat=5) for e in (raw, bounded)
        ]
        per_batch = [
            batch_seconds(raw, query, cap=max_seconds),
            batch_seconds(bounded, query, cap=float("inf")),
        ]
        print(
            f"| {name} | {len(unicodedata.normalize('NFKC', query)):,} "
            f"| {per_query[0]:.2f} | {per_query[1]:.2f} | {per_batch[0]} | {per_batch[1]} |",
            flush=True,
        )


def _unit_rows(rng: np.random.Generator, n: int) -> FloatArray:
    rows = rng.standard_normal((n, 512), dtype=np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows


def ranking(sizes: Sequence[int]) -> None:
    """Print the seconds to rank a batch of ``BATCH`` searches per catalogue size."""
    rng = np.random.default_rng(0)
    print(f"\n| catalogue items | s per batch of {BATCH:,} searches |\n|---|---|")
    for size in sizes:
        catalogue = TextCatalogue(dim=512)
        for start in range(0, size, 100_000):
            count = min(100_000, size - start)
            catalogue.add([f"i{start + n}" for n in range(count)], _unit_rows(rng, count))
        baseline = CooccurrenceRecommender()
        ranker = ContextRanker(
            baseline,
            fallback=baseline,
            catalogue=catalogue,
            encode_queries=lambda texts: _unit_rows(rng, len(texts)),
        )
        requests = [RankRequest(history=["seen"], query="q")] * BATCH
        took = seconds(functools.partial(ranker.rank_many, requests), repeat=1)
        print(f"| {size:,} | {took:.2f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-seconds", type=float, default=20.0, help="longest timed batch")
    parser.add_argument("--catalogue", type=int, nargs="*", default=[], help="catalogue sizes")
    args = parser.parse_args()
    settings = Settings()
    budget = TextBudget(
        max_chars=settings.max_query_chars, max_batch_chars=settings.max_query_chars_per_batch
    )
    encoding(budget, max_seconds=args.max_seconds)
    ranking(args.catalogue)


if __name__ == "__main__":
    main()
