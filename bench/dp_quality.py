"""Quality cost of differential privacy: DP-SGD at epsilon 1, 4, 8 against non-private training.

Every model trains with :func:`model.training.fit.fit` under the same wall-clock budget
(``--minutes``; a run stops after the epoch that passes it) and is judged on the
validation split (the last 10 % of the training sessions, 20,000 seeded prefixes;
``--test`` also scores the test cases once). The DP runs calibrate their noise for
``--dp-epochs`` epochs; a run the budget cuts short spends less than its target
epsilon, which the table shows. delta defaults to the largest power of ten below
1 / (training sessions).

Run (GPU): ``python bench/dp_quality.py --device cuda --minutes 10``
Smoke test: ``.venv/bin/python bench/dp_quality.py --sessions 2000 --minutes 0.1 --dp-epochs 1
--epsilons 8 --d-model 32``
"""

from __future__ import annotations

import argparse
import gzip
import logging
import math
import tempfile
from pathlib import Path
from typing import Any

import torch

from model.evaluation.evaluate import checkpoint_factory, load_protocol, run_evaluation
from model.training.fit import DP_ARCHITECTURE, fit, validation_split
from model.training.train import EpochReport, TrainConfig


def head_file(data: Path, sessions: int, out: Path) -> Path:
    """The first ``sessions`` sessions of ``data``'s training events, as a file."""
    source = data / "train.csv.gz" if data.is_dir() else data
    path = out / f"head-{sessions}.csv"
    seen: set[str] = set()
    opener = gzip.open if source.suffix == ".gz" else open
    with opener(source, "rt", encoding="utf-8") as lines, open(path, "w") as head:
        head.write(next(lines))
        for line in lines:
            session = line.split(",", 3)[2]
            if session not in seen and len(seen) == sessions:
                break
            seen.add(session)
            head.write(line)
    return path


def default_delta(data: Path, seed: int) -> float:
    """The largest power of ten below 1 / (sessions fit trains on)."""
    train = validation_split(load_protocol(data).train, seed=seed).train
    n = sum(1 for session in train if len(session) >= 2)
    return 10.0 ** math.floor(math.log10(1 / n) - 1e-9)


def row(name: str, reports: list[EpochReport]) -> str:
    """One markdown row: privacy spent, epochs, minutes, last epoch's validation metrics."""
    last = reports[-1]
    privacy: dict[str, Any] = last.privacy or {}
    spent = f"{privacy['epsilon']:.2f}" if privacy else "-"
    target = f"{privacy['target_epsilon']:g}" if privacy else "-"
    delta = f"{privacy['delta']:.0e}" if privacy else "-"
    sigma = f"{privacy['noise_multiplier']:.3f}" if privacy else "-"
    minutes = sum(report.seconds for report in reports) / 60
    return (
        f"| {name} | {target} | {spent} | {delta} | {sigma} | {len(reports)} | {minutes:.1f} "
        f"| {last.metrics['P@20']:.2f} | {last.metrics['MRR@20']:.2f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/diginetica"))
    parser.add_argument("--minutes", type=float, default=10.0, help="budget per model")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--epsilons", default="1,4,8", help="comma-separated targets")
    parser.add_argument("--delta", type=float, help="default: power of ten below 1/N")
    parser.add_argument("--dp-epochs", type=int, default=5, help="epochs the noise is planned for")
    parser.add_argument("--dp-batch-size", type=int, default=1024, help="expected Poisson batch")
    parser.add_argument("--max-grad-norm", type=float, default=1.0)
    parser.add_argument("--accountant", choices=["prv", "rdp"], default="prv")
    parser.add_argument("--epochs", type=int, default=100, help="non-private cap (time rules)")
    parser.add_argument("--lr", type=float, default=TrainConfig.learning_rate)
    parser.add_argument("--d-model", type=int, help="default: ScorerConfig's")
    parser.add_argument("--sessions", type=int, help="use only the first N sessions (smoke test)")
    parser.add_argument("--test", action="store_true", help="also score the test cases once")
    parser.add_argument("--out", type=Path, help="run folders (default: a temporary folder)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    out = args.out or Path(tempfile.mkdtemp(prefix="dp-quality-"))
    out.mkdir(parents=True, exist_ok=True)
    data = head_file(args.data, args.sessions, out) if args.sessions else args.data
    delta = args.delta or default_delta(data, args.seed)
    common = {"learning_rate": args.lr, "seed": args.seed, "max_minutes": args.minutes}
    # The non-private arm has the DP runs' architecture, negatives and constant learning
    # rate, so the rows differ by DP-SGD alone.
    non_private = TrainConfig(
        epochs=args.epochs, negatives=TrainConfig.dp_negatives, lr_half_life=0, **common
    )
    runs: dict[str, TrainConfig] = {"non-private": non_private}
    for epsilon in (float(e) for e in args.epsilons.split(",")):
        runs[f"DP-SGD, epsilon {epsilon:g}"] = TrainConfig(
            epochs=args.dp_epochs,
            batch_size=args.dp_batch_size,
            dp_epsilon=epsilon,
            dp_delta=delta,
            dp_max_grad_norm=args.max_grad_norm,
            dp_accountant=args.accountant,
            **common,
        )
    scorer: dict[str, Any] = dict(DP_ARCHITECTURE)
    if args.d_model:
        scorer["d_model"] = args.d_model
    print(f"{data} on {args.device}, {args.minutes:g} min per model, runs in {out}\n")
    print(
        "| model | target epsilon | spent epsilon | delta | noise multiplier | epochs | minutes "
        "| val P@20 | val MRR@20 |\n|---|---|---|---|---|---|---|---|---|",
        flush=True,
    )
    folders = {}
    for name, config in runs.items():
        folder = out / name.replace(" ", "").replace(",", "-")
        reports = fit(
            data,
            folder,
            train_config=config,
            scorer_options=scorer,
            progress=False,
            device=torch.device(args.device),
        )
        print(row(name, reports), flush=True)
        folders[name] = folder
    if args.test:
        models = {name: checkpoint_factory(folder) for name, folder in folders.items()}
        print(run_evaluation(data, models=models, progress=False))


if __name__ == "__main__":
    main()
