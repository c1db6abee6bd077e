"""Quality of a private served ranker at each epsilon: released transitions + recent items.

What a DP checkpoint's ranker keeps besides its transformer, measured alone on the
test cases (the protocol of docs/quality.md), at epsilon 0.5 to 8 and without noise:

* **memory**: which items sessions hold near which, released once from the
  training part with OpenDP's Gaussian threshold (``model/training/transitions.py``),
  at (epsilon, delta) per session;
* **recent items**: the shopper's own history, which costs no privacy;
* **the mix** of the two, chosen on the validation part (one case a held-out
  session) with OpenDP's report-noisy-max at epsilon per session: the validation
  sessions are not in the training part, so by parallel composition each session
  is covered at epsilon, not twice that.

Items are indexed by the data set's item list (a shop's public catalogue). The
same run scores the floor (recent items only: no data used) and V-SKNN (k = 100,
non-private, no training) beside them.

``--checkpoint RUN`` adds a DP-trained checkpoint (``intentstream train --dp-epsilon``)
as a worker serves it: the test sessions replayed through the worker's own pipeline in
process (each session a shopper, views one second apart), its lists scored; its
epsilon is the checkpoint's.

Run: ``.venv/bin/python bench/dp_served.py`` (about 25 minutes on the 2-core machine;
``--cases 10000`` for a quicker look, ``--epsilons ""`` to skip the curve).
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from pathlib import Path

import scipy.sparse as sp

from model.checkpoint import load_checkpoint
from model.evaluation.evaluate import baseline_factories, evaluate, load_protocol
from model.evaluation.tuning import choose_weights_privately
from model.ranking.fusion import FusedRanker, RecentItems
from model.ranking.parts import FusionWeights
from model.ranking.transitions import TransitionRanker
from model.serving.scorers import CheckpointScorer
from model.training.fit import validation_split
from model.training.transitions import (
    MAX_PAIRS,
    WINDOW,
    bounded_counts,
    pair_matrix,
    private_transitions,
)
from streams.ops.session_replay import replay_in_process, replay_plan
from streams.settings import Settings


def exact_transitions(sessions: list[list[int]], n_items: int) -> sp.csr_matrix:
    """The same bounded contributions, summed without noise or threshold (epsilon = inf)."""
    counts = bounded_counts(sessions, n_items=n_items, window=WINDOW, max_pairs=MAX_PAIRS)
    return pair_matrix(counts, n_items)


def served_row(data: Path, run: Path) -> str:
    """A table row: the DP checkpoint's lists as the worker's pipeline serves them."""
    started = time.monotonic()
    checkpoint = load_checkpoint(run)
    plan = replay_plan(data, warmup=False)
    scorer = CheckpointScorer(checkpoint, bf16=False)
    result = plan.quality(replay_in_process(Settings(), plan.events, scorer=scorer))
    privacy = checkpoint.meta.get("privacy") or {}
    mix = "-"
    if checkpoint.ranking is not None:
        w = checkpoint.ranking.weights
        mix = f"transformer {w.transformer:g}, memory {w.neighbours:g}, recent {w.recent:g}"
    return (
        f"| {privacy.get('epsilon', math.inf):.2f} (checkpoint {run.name}, through the worker's "
        f"pipeline) | - | - | {privacy.get('memory', {}).get('pairs', '-')} | "
        f"{mix} | {result['P@20']:.2f} | {result['MRR@20']:.2f} | {result['HR@10']:.2f} "
        f"| {time.monotonic() - started:.0f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/diginetica"))
    parser.add_argument("--epsilons", default="0.5,1,2,4,8,inf")
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--cases", type=int, default=0, help="score only the first N test cases")
    parser.add_argument("--seed", type=int, default=0, help="of the validation split")
    parser.add_argument("--checkpoint", type=Path, help="a DP run, served through the pipeline")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    protocol = load_protocol(args.data)
    cases = protocol.cases[: args.cases] if args.cases else protocol.cases
    n_items = len(protocol.vocab)
    split = validation_split(protocol.train, seed=args.seed)
    prefixes, targets = split.one_per_session()
    print(
        f"{protocol.name}: {len(split.train):,} training sessions, {len(prefixes):,} validation "
        f"sessions (one case each), {len(cases):,} test cases, {n_items - 1:,} items, "
        f"delta {args.delta:g}\n"
    )
    print(
        "| epsilon | noise scale | threshold | pairs released | mix (memory / recent) "
        "| P@20 | MRR@20 | HR@10 | seconds |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    started = time.monotonic()
    recent = RecentItems(n_items=n_items, decay=0.5)
    floor = evaluate(recent, cases, protocol.vocab)
    seconds = time.monotonic() - started
    print(
        f"| 0 (recent items only) | - | - | 0 | 0 / 1 | {floor['P@20']:.2f} "
        f"| {floor['MRR@20']:.2f} | {floor['HR@10']:.2f} | {seconds:.0f} |",
        flush=True,
    )
    for text in [e for e in args.epsilons.split(",") if e]:
        epsilon = float(text)
        started = time.monotonic()
        if math.isinf(epsilon):
            matrix, scale, threshold = exact_transitions(split.train, n_items), "-", "-"
        else:
            matrix, spend = private_transitions(
                split.train, n_items=n_items, epsilon=epsilon, delta=args.delta
            )
            scale, threshold = f"{spend['noise_scale']:.3f}", f"{spend['threshold']:.2f}"
        memory = TransitionRanker(matrix)
        weights: FusionWeights
        if math.isinf(epsilon):
            weights, _ = choose_weights_privately(
                None,
                memory,
                prefixes,
                targets,
                epsilon=1e6,  # the best mix, all but exactly
            )
        else:
            weights, _ = choose_weights_privately(None, memory, prefixes, targets, epsilon=epsilon)
        ranker = FusedRanker(
            [(memory, "counts", weights.neighbours), (recent, "counts", weights.recent)]
        )
        result = evaluate(ranker, cases, protocol.vocab)
        seconds = time.monotonic() - started
        print(
            f"| {text} | {scale} | {threshold} | {matrix.nnz:,} | {weights.neighbours:g} / "
            f"{weights.recent:g} | {result['P@20']:.2f} | {result['MRR@20']:.2f} "
            f"| {result['HR@10']:.2f} | {seconds:.0f} |",
            flush=True,
        )
    if args.checkpoint:
        print(served_row(args.data, args.checkpoint), flush=True)
    started = time.monotonic()
    vsknn = baseline_factories()["V-SKNN (k=100)"](protocol)
    result = evaluate(vsknn, cases, protocol.vocab)
    print(
        f"| V-SKNN, not private | - | - | - | - | {result['P@20']:.2f} | {result['MRR@20']:.2f} "
        f"| {result['HR@10']:.2f} | {time.monotonic() - started:.0f} |"
    )


if __name__ == "__main__":
    main()
