"""Two-stage serving: the share of test targets a candidate stage keeps, the cost of ranking them.

Candidates per prefix: its own items, the served ranker's session-kNN top ``--knn``,
the ``--ann`` items nearest the transformer's readout query (exact inner products
with the unit item table and ``torch.topk``, which an ANN index such as faiss or
hnswlib would approximate; with ``faiss`` importable, an HNSW index's recall of that
exact top-k is shown too) and the ``--popular`` most frequent training items. On a
seeded sample of the test cases (loaded as ``intentstream evaluate`` does): candidate
count and recall, and P@20 / MRR@20 of the served ranker and of its transformer over
all items against the candidates only, "masked" (the same scores, others dropped) or
"cand. softmax" (the transformer's explore softmax over the candidates only, kNN and
recent items as served); then the transformer's time per 256 prefixes.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python bench/candidates.py --checkpoint RUN
--data DIGINETICA --cases 10000`` (RUN: a run folder of ``intentstream train``).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import timeit
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from model.batches import HistoryBatch, pad_histories
from model.checkpoint import load_checkpoint
from model.evaluation.evaluate import encode_cases, load_protocol
from model.evaluation.metrics import RankingMetrics, target_ranks
from model.ranking.fusion import RecentItems, as_distribution
from model.ranking.knn import SessionKNN
from model.ranking.ranker import served_ranker
from model.scorer import SequenceScorer

INF = float("-inf")
SOURCES = ("prefix", "kNN", "ANN", "popular")
Budget = tuple[int, int, int]  # kNN, ANN, popular


def candidate_log_scores(
    model: SequenceScorer, batch: HistoryBatch, h: Tensor, table: Tensor, idx: Tensor
) -> Tensor:
    """``(B, C)`` log-scores of candidates ``idx`` (``(B, C)``, 0 = none), softmax over them only.

    :meth:`SequenceScorer.next_log_scores` with the explore softmax over the
    candidates the history does not hold instead of over every item.
    """
    rows, last = torch.arange(h.shape[0]), batch.lengths - 1
    query = F.normalize(model.queries(h, batch)[rows, last], dim=-1)
    logits = model.config.logit_scale * torch.bmm(table[idx], query[:, :, None]).squeeze(-1)
    seen = idx[:, :, None] == batch.items[:, None, :]  # (B, C, T)
    logits = logits.masked_fill(seen.any(-1) | (idx == 0), INF)
    if model.repeat_head is None:
        return logits
    pointer, log_gate, log_keep = model.repeat_head(
        h[rows, last][:, None], h, batch.items[:, None] != 0
    )
    mixture = torch.nan_to_num(torch.softmax(logits, dim=-1)) * log_keep.exp()
    mixture += (seen.float() @ pointer[:, 0, :, None]).squeeze(-1) * log_gate.exp()
    out: Tensor = mixture.log().masked_fill(idx == 0, INF)
    return out


def padded(mask: Tensor) -> Tensor:
    """``(B, C)`` indices of each row's True columns, padded with 0."""
    values, idx = mask.float().topk(int(mask.sum(1).max()), dim=1)
    return idx.masked_fill(values == 0, 0)


def source_masks(
    prefixes: list[list[int]], knn: Tensor, ann: Tensor, popular: Tensor, b: Budget
) -> dict[str, Tensor]:
    """``(B, N)`` candidate masks per source from kNN scores and the query's inner products."""
    masks = {s: torch.zeros(knn.shape, dtype=torch.bool) for s in SOURCES}
    width = max(len(p) for p in prefixes)
    masks["prefix"].scatter_(1, torch.tensor([p + [0] * (width - len(p)) for p in prefixes]), True)
    top = knn.topk(b[0], dim=1)
    masks["kNN"].scatter_(1, top.indices, top.values > 0)
    masks["ANN"].scatter_(1, ann.topk(b[1], dim=1).indices, True)
    masks["popular"][:, popular[: b[2]]] = True
    for mask in masks.values():
        mask[:, 0] = False
    return masks


def median_seconds(call: Callable[[], object], repeats: int) -> float:
    """Median wall seconds of ``call`` after one warm-up."""
    call()
    return statistics.median(timeit.repeat(call, number=1, repeat=repeats))


def row(*cells: object, rule: bool = False) -> None:
    """Print a markdown table row (``rule``: as a header, after a blank line)."""
    print(("\n" if rule else "") + "| " + " | ".join(str(cell) for cell in cells) + " |")
    if rule:
        print("|---" * len(cells) + "|")


def name(b: Budget) -> str:
    """A budget as ``kNN/ANN/popular``."""
    return "/".join(map(str, b))


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
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5, help="timing runs per scorer")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    budgets = [(k, a, args.popular) for k, a in zip(args.knn, args.ann, strict=True)]

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
    counts = np.bincount(to_model[[i for seq in protocol.train for i in seq]].numpy(), minlength=n)
    counts[0] = -1
    popular = torch.from_numpy(np.argsort(-counts, kind="stable"))
    w = parts.weights
    knn = SessionKNN.from_sessions(parts.sessions, k=parts.k, weighting="linear")
    recent = RecentItems(n_items=n, decay=parts.recent_decay)
    with torch.inference_mode():
        table = model.item_table()
    try:
        import faiss  # optional, not a dependency
    except ImportError:
        faiss = None
    if faiss is not None:
        hnsw = faiss.IndexHNSWFlat(table.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efSearch = 2 * max(args.ann)
        hnsw.add(table[1:].numpy())

    metrics: dict[tuple[str, str], RankingMetrics] = defaultdict(RankingMetrics)
    sizes: dict[Budget, list[Tensor]] = defaultdict(list)
    hits: dict[tuple[Budget, str], float] = defaultdict(float)
    for start in range(0, len(mapped), args.batch_size):
        chunk, target = mapped[start:][: args.batch_size], targets[start:][: args.batch_size]
        rows = torch.arange(len(chunk))
        batch = pad_histories(chunk, max_len=model.config.max_len)
        with torch.inference_mode():
            h = model.hidden(batch)
            query = model.queries(h, batch)[rows, batch.lengths - 1]
            ann = model.item_logits(query, table)  # exact inner products: what ANN approximates
            log_scores = model.next_log_scores(h, batch, table)
        knn_scores = knn.score_many(chunk)
        others = w.neighbours * as_distribution(knn_scores, "counts")
        others += w.recent * as_distribution(recent.score_many(chunk), "counts")
        fused = w.transformer * as_distribution(log_scores, "logits") + others
        fused[:, 0] = INF
        if start == 0:  # the ranker that is served
            expected = served_ranker(checkpoint).score_many(chunk)
            torch.testing.assert_close(fused, expected, rtol=1e-4, atol=1e-6)
        for ranker, scores in {"served": fused, "transformer": log_scores}.items():
            metrics[(ranker, "full")].update(scores.masked_fill(~known, INF), target)
        exact = ann.topk(max(args.ann), dim=1).indices
        if faiss is not None:
            unit = F.normalize(query, dim=-1).numpy()
            approx = torch.from_numpy(hnsw.search(unit, exact.shape[1])[1]) + 1
        for b in budgets:
            masks = source_masks(chunk, knn_scores, ann, popular, b)
            union = torch.stack(list(masks.values())).any(0) & known
            sizes[b].append(union.sum(1))
            found = {s: mask[rows, target] & (target != 0) for s, mask in masks.items()}
            hits[(b, "union")] += float(union[rows, target].sum())
            for source, hit in found.items():
                elsewhere = torch.stack([v for s, v in found.items() if s != source]).any(0)
                hits[(b, source)] += float(hit.sum())
                hits[(b, f"{source} only")] += float((hit & ~elsewhere).sum())
            if faiss is not None:
                same = (approx[:, : b[1], None] == exact[:, None, : b[1]]).any(-1).sum()
                hits[(b, "hnsw")] += float(same) / b[1]
            idx = padded(union)
            with torch.inference_mode():
                cand = candidate_log_scores(model, batch, h, table, idx)
            cand_log = torch.full_like(log_scores, INF).scatter_(1, idx, cand)
            cand_log[:, 0] = INF
            fused_cand = w.transformer * as_distribution(cand_log, "logits") + others
            variants = {
                ("served", "masked"): fused,
                ("served", "cand. softmax"): fused_cand,
                ("transformer", "masked"): log_scores,
                ("transformer", "cand. softmax"): cand_log,
            }
            for (ranker, variant), scores in variants.items():
                ranks = target_ranks(scores.masked_fill(~union, INF), target)
                metrics[(ranker, f"{b} {variant}")].update_ranks(ranks)

    total = len(mapped)
    print(f"{total} test cases (seed {args.seed}) of {len(protocol.cases)}; mix {w}")
    columns = ["kNN/ANN/pop", "candidates mean", "p95", "recall %"]
    columns += [f"{s} alone / only %" for s in SOURCES] + ["HNSW recall %"] * bool(faiss)
    row(*columns, rule=True)
    for b in budgets:
        size = torch.cat(sizes[b]).double()
        share = {key: 100 * value / total for (c, key), value in hits.items() if c == b}
        cells = [name(b), f"{size.mean():.0f}", f"{size.quantile(0.95):.0f}"]
        cells += [f"{share['union']:.2f}"]
        cells += [f"{share[s]:.1f} / {share[f'{s} only']:.2f}" for s in SOURCES]
        row(*cells, *([f"{share['hnsw']:.2f}"] if faiss is not None else []))
    row("ranker", "kNN/ANN/pop", "ranking", "P@20", "ΔP@20", "MRR@20", "ΔMRR@20", rule=True)
    for ranker in ("served", "transformer"):
        ref = metrics[(ranker, "full")].result()
        row(ranker, "-", "all items", f"{ref['P@20']:.2f}", "-", f"{ref['MRR@20']:.2f}", "-")
        for b, variant in ((b, v) for b in budgets for v in ("masked", "cand. softmax")):
            got = metrics[(ranker, f"{b} {variant}")].result()
            deltas = [f"{got[m]:.2f} | {got[m] - ref[m]:+.2f}" for m in ("P@20", "MRR@20")]
            row(ranker, name(b), variant, *deltas)

    chunk = mapped[:256]  # the transformer's time per 256 prefixes
    batch = pad_histories(chunk, max_len=model.config.max_len)
    rows, knn_scores = torch.arange(len(chunk)), knn.score_many(chunk)
    with torch.inference_mode():
        full_s = median_seconds(lambda: model.score_many(batch, items=table), args.repeats)
        query = model.queries(model.hidden(batch), batch)[rows, batch.lengths - 1]
        ann = model.item_logits(query, table)
        top = max(args.ann)
        top_s = median_seconds(lambda: model.item_logits(query, table).topk(top), args.repeats)
        row(f"transformer, {args.threads} thread(s)", "items", "ms / 256 prefixes", "", rule=True)
        row("all items", n - 1, f"{1000 * full_s:.0f}", "1.0x")
        row(f"exact top-{top} of the query (ANN stage)", n - 1, f"{1000 * top_s:.0f}", "")
        for b in budgets:
            masks = source_masks(chunk, knn_scores, ann, popular, b)
            idx = padded(torch.stack(list(masks.values())).any(0) & known)

            def candidate_pass(i: Tensor = idx) -> Tensor:
                return candidate_log_scores(model, batch, model.hidden(batch), table, i)

            cand_s = median_seconds(candidate_pass, args.repeats)
            timing = [f"{1000 * cand_s:.0f}", f"{full_s / cand_s:.1f}x"]
            row(f"candidates {name(b)} (padded)", idx.shape[1], *timing)
    print(f"\nwall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
