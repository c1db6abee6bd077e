"""Diginetica quality of a trained checkpoint beside baselines and published results.

1. On the validation split (last 10 % of the training sessions, as in training),
   pick the weight of the transformer in a late fusion with V-SKNN.
2. On the 60,858 SR-GNN test cases, once: popularity, SKNN, V-SKNN, the
   transformer alone and the fusion, beside the published numbers.

Run: ``.venv/bin/python bench/quality.py --checkpoint runs/diginetica``
(train first: ``intentstream train ../shared/data/diginetica --out runs/diginetica``).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from model.checkpoint import load_checkpoint
from model.evaluate import (
    CheckpointRanker,
    Scorer,
    ScorerFactory,
    baseline_factories,
    checkpoint_factory,
    fused_factory,
    load_protocol,
    run_evaluation,
)
from model.fit import validation_split
from model.fusion import FusedRanker
from model.knn import SessionKNN
from model.metrics import RankingMetrics

WEIGHTS = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0)


def _fused(transformer: Scorer, knn: Scorer, weight: float) -> FusedRanker:
    return FusedRanker([(transformer, "logits", weight), (knn, "counts", 1.0 - weight)])


def pick_weight(data: Path, checkpoint: Path, seed: int) -> tuple[float, dict[float, dict]]:
    protocol = load_protocol(data)
    split = validation_split(protocol.train, seed=seed)
    transformer = CheckpointRanker(load_checkpoint(checkpoint), protocol.vocab)
    knn = SessionKNN(split.train, n_items=len(protocol.vocab), weighting="linear")
    results = {}
    for weight in WEIGHTS:
        metrics = RankingMetrics()
        ranker = _fused(transformer, knn, weight)
        for i in range(0, len(split.prefixes), 1024):
            metrics.update(
                ranker.score_many(split.prefixes[i : i + 1024]), split.targets[i : i + 1024]
            )
        results[weight] = metrics.result()
        logging.info("validation weight %.1f: %s", weight, results[weight])
    best = max(results, key=lambda w: results[w]["P@20"] + results[w]["MRR@20"])
    return best, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/diginetica"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    weight, validation = pick_weight(args.data, args.checkpoint, args.seed)
    print("| transformer weight | val P@20 | val MRR@20 |\n|---|---|---|")
    for w, m in validation.items():
        print(f"| {w:.1f} | {m['P@20']:.2f} | {m['MRR@20']:.2f} |")
    models: dict[str, ScorerFactory] = {
        **baseline_factories(),
        "transformer": checkpoint_factory(args.checkpoint),
        f"transformer + V-SKNN (w={weight:.1f})": fused_factory(args.checkpoint, weight),
    }
    print(run_evaluation(args.data, models=models, progress=False))


if __name__ == "__main__":
    main()
