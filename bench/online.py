"""Online HR@10 over time on YOOCHOOSE: frozen model vs incremental updates vs online baseline.

A transformer is pretrained on ``yoochoose-100k/train.csv.gz`` (April 2014,
70k clicks). Then the test clicks (13.6k, the days after) are replayed in time
order. For each click with an earlier click in its session, before anything
learns from it, every model's top 10 for the session so far is checked for the
clicked item (prequential HR@10 and NDCG@10, ``online_learning.prequential``):

* (a) **frozen**: the pretrained model, never updated;
* (b) **incremental**: the same start, updated from the stream by
  ``online_learning.trainer.IncrementalTrainer`` (every 256 new sessions-so-far,
  4 steps, half replayed from a reservoir seeded with the training sessions);
* (c) **incremental DP**: the same start, updated with DP-SGD as the learner does under
  ``INTENTSTREAM_LEARN_DP_NOISE_MULTIPLIER``: a pool of each session's latest prefix for
  ``--dp-pool-updates`` updates, each step a Poisson sample of it at ``--dp-rate``,
  no replay, no new items, until the lifetime cap ``--dp-epsilon`` (delta 1e-6; no
  per-window budget: the replay is faster than any window);
* (d) **online co-occurrence**: the stream baseline (``model.serving.baseline``) learning
  every click as it comes (no DP here, so it is its best case).

All four run in the same process on the same clicks, in chunks of 200 clicks
(a worker's batch): lists are computed at the start of a chunk, learning happens
click by click after scoring, and the transformer updates between chunks. The
table shows HR@10 per block of 2,000 scored clicks and overall, and the update
throughput.

Run: ``.venv/bin/python bench/online.py [--epochs 15] [--dp-sigma 1.5]`` (a few minutes on
the 2-core machine; the DP steps take about as long as the plain updates).
"""

from __future__ import annotations

import argparse
import copy
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import torch

from model.config import ScorerConfig
from model.evaluation.evaluate import load_protocol
from model.scorer import SequenceScorer
from model.serving.baseline import CooccurrenceRecommender
from model.serving.ranker import top_items
from model.training.train import TrainConfig, train
from model.training.update import OnlinePrivacy
from model.vocab import ItemVocab
from online_learning.prequential import PrequentialRanking
from online_learning.trainer import IncrementalTrainer, UpdateConfig
from streams.ops.event_log import read_events

DATA = Path("../shared/data/yoochoose-100k")
K = 10
CHUNK = 200
BLOCK = 2_000


def pretrain(epochs: int, seed: int) -> tuple[SequenceScorer, ItemVocab, list[list[int]], float]:
    protocol = load_protocol(DATA / "train.csv.gz")
    sequences = [s for s in protocol.train if len(s) >= 2]
    torch.manual_seed(seed)
    model = SequenceScorer(ScorerConfig(n_items=len(protocol.vocab), d_model=64))
    started = time.perf_counter()
    config = TrainConfig(
        epochs=epochs, negatives=0, bf16=False, seed=seed, learning_rate=3e-3, lr_half_life=0
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    train(model, sequences, config, optimizer=optimizer, progress=False)
    return model.eval(), protocol.vocab, sequences, time.perf_counter() - started


def private_trainer(
    model: SequenceScorer, vocab: ItemVocab, args: argparse.Namespace
) -> IncrementalTrainer:
    """The learner's DP-SGD trainer: a Poisson-sampled pool, the lifetime cap, no growing."""
    config = UpdateConfig(seed=args.seed, pool_updates=args.dp_pool_updates)
    privacy = OnlinePrivacy(
        noise_multiplier=args.dp_sigma,
        max_grad_norm=1.0,
        delta=1e-6,
        epsilon_budget=args.dp_epsilon,
        sample_rate=args.dp_rate,
    )
    # The noisy sum's divisor: the expected sample, as the learner sets it.
    rows = max(1, round(args.dp_rate * config.update_every * args.dp_pool_updates))
    return IncrementalTrainer(
        model, vocab, config=replace(config, batch_size=rows), privacy=privacy
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15, help="pretraining epochs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dp-sigma", type=float, default=1.5, help="DP noise multiplier")
    parser.add_argument("--dp-rate", type=float, default=0.1, help="DP Poisson sample rate")
    parser.add_argument("--dp-pool-updates", type=int, default=8, help="updates in the DP pool")
    parser.add_argument("--dp-epsilon", type=float, default=8.0, help="DP lifetime cap")
    args = parser.parse_args()
    torch.set_num_threads(2)
    frozen, vocab, train_sequences, pretrain_s = pretrain(args.epochs, args.seed)
    learner = copy.deepcopy(frozen)
    # The trainer's own vocabulary: it adds the items new in the test clicks
    # (model/training/grow.py).
    trainer = IncrementalTrainer(
        learner, copy.deepcopy(vocab), config=UpdateConfig(seed=args.seed), replay=train_sequences
    )
    private = private_trainer(copy.deepcopy(frozen), vocab, args)
    baseline = CooccurrenceRecommender()
    for sequence in load_protocol(DATA / "train.csv.gz").train:  # the same history
        items = [vocab.ids[i] for i in sequence]
        for position, item in enumerate(items):
            baseline.learn_one(items[:position], item)

    clicks = sorted(read_events(DATA / "test.csv.gz"), key=lambda e: float(e["ts"]))
    names = ("frozen", "incremental", "incremental DP", "co-occurrence")
    overall = {name: PrequentialRanking(k=K) for name in names}
    blocks: dict[str, list[PrequentialRanking]] = defaultdict(list)
    sessions: dict[str, list[str]] = defaultdict(list)
    update_seconds = private_seconds = 0.0
    for start in range(0, len(clicks), CHUNK):
        chunk = clicks[start : start + CHUNK]
        # Each click's session so far, earlier clicks of the same chunk included; the
        # models only change between chunks (a worker's batch).
        prefixes, grown = [], {}
        for click in chunk:
            so_far = grown.setdefault(click["session_id"], list(sessions[click["session_id"]]))
            prefixes.append(list(so_far))
            so_far.append(click["item_id"])
        lists = {
            "frozen": top_items(frozen, vocab, prefixes, k=K),
            "incremental": trainer.top_k(prefixes, k=K),
            "incremental DP": private.top_k(prefixes, k=K),
            "co-occurrence": [
                [i for i, _ in baseline.recommend(p, k=K)] if p else [] for p in prefixes
            ],
        }
        for row, click in enumerate(chunk):
            prefix, item = prefixes[row], click["item_id"]
            for name in names:
                if prefix:
                    scored = overall[name].n
                    if scored % BLOCK == 0:
                        blocks[name].append(PrequentialRanking(k=K))
                    overall[name].update_one(lists[name][row], item)
                    blocks[name][-1].update_one(lists[name][row], item)
            baseline.learn_one(prefix, item)
            sessions[click["session_id"]].append(item)
            began = time.perf_counter()
            trainer.observe(sessions[click["session_id"]])
            update_seconds += time.perf_counter() - began
            began = time.perf_counter()
            private.observe(sessions[click["session_id"]], key=click["session_id"])
            private_seconds += time.perf_counter() - began

    print(
        f"pretraining: {args.epochs} epochs in {pretrain_s:.0f} s; "
        f"{len(clicks):,} test clicks, {overall['frozen'].n:,} scored"
    )
    header = " | ".join(f"HR@10 {name}" for name in names)
    print(f"| scored clicks | {header} |\n|---|{'---|' * len(names)}")
    for index in range(len(blocks["frozen"])):
        cells = " | ".join(f"{100 * blocks[name][index].snapshot().hr:.2f}" for name in names)
        first = index * BLOCK + 1
        last = first - 1 + blocks["frozen"][index].n
        print(f"| {first:,}-{last:,} | {cells} |")
    cells = " | ".join(f"**{100 * overall[name].snapshot().hr:.2f}**" for name in names)
    print(f"| all | {cells} |")
    ndcg = ", ".join(f"{name} {100 * overall[name].snapshot().ndcg:.2f}" for name in names)
    print(f"\nNDCG@10: {ndcg}")
    print(
        f"updates: {trainer.updates} of {UpdateConfig().steps} steps, {trainer.examples:,} "
        f"examples in {update_seconds:.1f} s = {trainer.examples / update_seconds:,.0f} "
        f"examples/s (observing + training)"
    )
    spent = cast(dict[str, Any], private.privacy_spent())  # a private trainer has one
    print(
        f"DP: sigma {args.dp_sigma}, sample rate {args.dp_rate}, pool {args.dp_pool_updates} "
        f"updates, {private.updates} updates, {spent['steps']} steps in {private_seconds:.0f} s; "
        f"epsilon {spent['epsilon']:.2f} at delta {spent['delta']:g} (cap {args.dp_epsilon}"
        f"{', reached' if not private.learning else ''})"
    )


if __name__ == "__main__":
    main()
