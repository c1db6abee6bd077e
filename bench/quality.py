"""Diginetica quality of a trained checkpoint beside baselines and published results.

1. On the validation split (last 10 % of the training sessions, as in training),
   pick the weight of the transformer in a late fusion with V-SKNN, then the
   weight of a recent-items (repeat) part.
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
from model.evaluation.evaluate import (
    CheckpointRanker,
    Scorer,
    ScorerFactory,
    baseline_factories,
    checkpoint_factory,
    fused_factory,
    fused_ranker,
    load_protocol,
    run_evaluation,
)
from model.evaluation.knn import SessionKNN
from model.evaluation.metrics import RankingMetrics
from model.training.fit import ValidationSplit, validation_split

WEIGHTS = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0)
REPEATS = (0.1, 0.2, 0.3)


def _validate(ranker: Scorer, split: ValidationSplit) -> dict[str, float]:
    metrics = RankingMetrics()
    for i in range(0, len(split.prefixes), 1024):
        metrics.update(ranker.score_many(split.prefixes[i : i + 1024]), split.targets[i : i + 1024])
    return metrics.result()


def pick_weights(
    data: Path, checkpoint: Path, seed: int
) -> tuple[float, float, list[tuple[float, float, dict[str, float]]]]:
    """Transformer weight, then repeat weight, each by validation P@20 + MRR@20."""
    protocol = load_protocol(data)
    split = validation_split(protocol.train, seed=seed)
    transformer = CheckpointRanker(load_checkpoint(checkpoint), protocol.vocab)
    knn = SessionKNN(split.train, n_items=len(protocol.vocab), weighting="linear")
    n_items = len(protocol.vocab)
    tried: list[tuple[float, float, dict[str, float]]] = []

    def score(weight: float, repeat: float) -> float:
        result = _validate(
            fused_ranker(transformer, knn, weight=weight, repeat=repeat, n_items=n_items), split
        )
        tried.append((weight, repeat, result))
        logging.info("validation weight %.2f repeat %.2f: %s", weight, repeat, result)
        return result["P@20"] + result["MRR@20"]

    plain = {w: score(w, 0.0) for w in WEIGHTS}
    weight = max(plain, key=plain.__getitem__)
    with_repeat = {r: score(weight, r) for r in REPEATS}
    repeat = max(with_repeat, key=with_repeat.__getitem__)
    return weight, (repeat if with_repeat[repeat] > plain[weight] else 0.0), tried


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/diginetica"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    weight, repeat, tried = pick_weights(args.data, args.checkpoint, args.seed)
    print("| transformer weight | repeat weight | val P@20 | val MRR@20 |\n|---|---|---|---|")
    for w, r, m in tried:
        print(f"| {w:.2f} | {r:.2f} | {m['P@20']:.2f} | {m['MRR@20']:.2f} |")
    models: dict[str, ScorerFactory] = {
        **baseline_factories(),
        "transformer": checkpoint_factory(args.checkpoint),
        f"transformer + V-SKNN (w={weight:.1f})": fused_factory(args.checkpoint, weight),
        f"transformer + V-SKNN + recent items (w={weight:.1f}, r={repeat:.2f})": fused_factory(
            args.checkpoint, weight, repeat=repeat
        ),
    }
    print(run_evaluation(args.data, models=models, progress=False))


if __name__ == "__main__":
    main()
