"""Two-stage serving: the share of test targets the candidate stage keeps, the cost of ranking them.

For each candidate budget (``--knn``, ``--ann`` and ``--popular``, zipped): the
served ranker as a worker runs it over its candidates
(:class:`~model.ranking.candidates.CandidateRanker`, a faiss inverted-file index for the nearest
items) against the same ranker over every item, on a seeded sample of the test
cases (loaded as ``intentstream evaluate`` does): candidate count, recall (test
targets among the candidates), P@20 / MRR@20 and their loss. Then where recall
comes from: each source alone, and only from it (the nearest items exact here,
with the index's recall of that exact top-k beside them).

Run: ``OMP_NUM_THREADS=1 .venv/bin/python bench/candidates.py --checkpoint RUN
--data DIGINETICA --cases 0`` (RUN: a run folder of ``intentstream train``).
"""

from __future__ import annotations

import argparse
import random
import time
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F

from model.batches import pad_histories
from model.checkpoint import load_checkpoint
from model.evaluation.evaluate import encode_cases, load_protocol
from model.evaluation.metrics import RankingMetrics
from model.ranking.candidates import CandidateRanker, NearestItems, top_columns
from model.ranking.knn import SessionKNN
from model.ranking.parts import CandidateBudget
from model.ranking.ranker import served_ranker

INF = float("-inf")
SOURCES = ("own items", "kNN", "nearest", "popular")


def row(*cells: object, rule: bool = False) -> None:
    """Print a markdown table row (``rule``: as a header, after a blank line)."""
    print(("\n" if rule else "") + "| " + " | ".join(str(cell) for cell in cells) + " |")
    if rule:
        print("|---" * len(cells) + "|")


def name(b: CandidateBudget) -> str:
    """A budget as ``kNN/nearest/popular``."""
    return f"{b.neighbours}/{b.nearest}/{b.popular}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="run folder (its BEST)")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/diginetica"))
    parser.add_argument("--cases", type=int, default=10000, help="sampled test cases; 0 = all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--knn", type=int, nargs="+", default=[50, 100, 200])
    parser.add_argument("--ann", type=int, nargs="+", default=[50, 100, 200])
    parser.add_argument("--popular", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=512)
    args = parser.parse_args()
    started = time.perf_counter()
    budgets = [CandidateBudget(k, a, args.popular) for k, a in zip(args.knn, args.ann, strict=True)]

    protocol, checkpoint = load_protocol(args.data), load_checkpoint(args.checkpoint)
    parts, model, n = checkpoint.ranking, checkpoint.model, checkpoint.model.config.n_items
    if parts is None or parts.sessions is None:
        raise SystemExit(f"{args.checkpoint}: no ranker parts with a kNN index")
    cases = protocol.cases
    if 0 < args.cases < len(cases):
        cases = random.Random(args.seed).sample(cases, args.cases)
    prefixes, targets = encode_cases(cases, protocol.vocab)
    # In the checkpoint's indices, as CheckpointRanker maps them; target 0 (unknown) is a miss.
    to_model = torch.tensor([checkpoint.vocab.index.get(item, 0) for item in protocol.vocab.ids])
    mapped = [[int(to_model[i]) for i in p if to_model[i]] or [0] for p in prefixes]
    targets = to_model[targets]
    known = torch.zeros(n, dtype=torch.bool).index_fill_(0, to_model, True)  # the protocol's
    known[0] = False
    knn = SessionKNN.from_sessions(parts.sessions, k=parts.k, weighting="linear")
    popular = torch.from_numpy(parts.popular_items())
    full = served_ranker(checkpoint, full_ranking=True)
    two_stage = {
        b: CandidateRanker(
            model,
            weights=parts.weights,
            knn=knn,
            popular=popular,
            budget=b,
            recent_decay=parts.recent_decay,
        )
        for b in budgets
    }
    with torch.inference_mode():
        table = model.item_table()
    index, widest = NearestItems(table), max(budgets, key=lambda b: b.total)

    metrics: dict[str, RankingMetrics] = defaultdict(RankingMetrics)
    sizes: dict[CandidateBudget, list[torch.Tensor]] = defaultdict(list)
    hits: dict[str, float] = defaultdict(float)
    for start in range(0, len(mapped), args.batch_size):
        chunk, target = mapped[start:][: args.batch_size], targets[start:][: args.batch_size]
        metrics["full"].update(full.score_many(chunk).masked_fill(~known, INF), target)
        for b, ranker in two_stage.items():
            candidates = ranker.candidates(chunk)
            metrics[name(b)].update(candidates.dense(n).masked_fill(~known, INF), target)
            sizes[b].append(known[candidates.items].sum(1))
            hits[name(b)] += float(
                ((candidates.items == target[:, None]) & (target[:, None] != 0)).any(1).sum()
            )
        # Where the widest budget's recall comes from; the nearest items exact.
        batch = pad_histories(chunk, max_len=model.config.max_len)
        with torch.inference_mode():
            h = model.hidden(batch)
            query = F.normalize(
                model.queries(h, batch)[torch.arange(len(chunk)), batch.lengths - 1], dim=-1
            )
            exact = (query @ table[1:].T).topk(widest.nearest).indices + 1
        approx = index.search(query, k=widest.nearest)
        hits["index"] += (
            float((approx[:, :, None] == exact[:, None, :]).any(-1).sum()) / widest.nearest
        )
        proposed = {
            "own items": batch.items,
            "kNN": top_columns(knn.item_scores(chunk), widest.neighbours),
            "nearest": exact,
            "popular": popular[: widest.popular].expand(len(chunk), -1),
        }
        found = {
            s: (items == target[:, None]).any(1) & (target != 0) for s, items in proposed.items()
        }
        for source, hit in found.items():
            elsewhere = torch.stack([v for s, v in found.items() if s != source]).any(0)
            hits[source] += float(hit.sum())
            hits[f"{source} only"] += float((hit & ~elsewhere).sum())

    total = len(mapped)
    print(f"{total} test cases (seed {args.seed}) of {len(protocol.cases)}; mix {parts.weights}")
    ref = metrics["full"].result()
    columns = ["kNN/nearest/popular", "candidates mean", "p95", "recall %", "P@20", "ΔP@20"]
    row(*columns, "MRR@20", "ΔMRR@20", rule=True)
    row("every item", n - 1, "", "100", f"{ref['P@20']:.2f}", "", f"{ref['MRR@20']:.2f}", "")
    for b in budgets:
        size, got = torch.cat(sizes[b]).double(), metrics[name(b)].result()
        cells = [name(b), f"{size.mean():.0f}", f"{size.quantile(0.95):.0f}"]
        cells += [f"{100 * hits[name(b)] / total:.2f}"]
        for m in ("P@20", "MRR@20"):
            cells += [f"{got[m]:.2f}", f"{got[m] - ref[m]:+.2f}"]
        row(*cells)
    row(f"source ({name(widest)})", "recall alone %", "only from it %", rule=True)
    for source in SOURCES:
        row(
            source,
            f"{100 * hits[source] / total:.1f}",
            f"{100 * hits[f'{source} only'] / total:.2f}",
        )
    recall = 100 * hits["index"] / total
    print(f"\nfaiss index recall of the exact nearest {widest.nearest}: {recall:.2f} %")
    print(f"wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
