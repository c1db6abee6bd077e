"""The whole private served ranker at each epsilon: trained with ``--dp-epsilon``, then served.

For each total epsilon per session this trains a DP run on the data set (one epoch
of DP-SGD, the budget of the training part split as vocabulary 1/8, DP-SGD 1/2,
memory 3/8; the validation part spends the same total on its own sessions, so by
parallel composition a session is covered at epsilon) and serves the chosen
checkpoint through the worker's pipeline (``bench/dp_served.py``'s ``served_row``:
the test sessions replayed in process, their lists scored). Each of the three
training-part mechanisms gets a third of delta, so the composed delta is ``--delta``.

Run: ``.venv/bin/python bench/dp_end_to_end.py`` (about 15 minutes an epsilon on the
2-core machine; ``--epsilons 8`` for one point).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from dp_served import served_row  # bench/ is the script's folder, first on sys.path

#: Shares of the training part's epsilon: vocabulary, DP-SGD, memory.
SHARES = (1 / 8, 1 / 2, 3 / 8)


def train(data: Path, out: Path, epsilon: float, delta: float) -> float:
    """Train one DP run into ``out``; returns its seconds."""
    vocabulary, sgd, memory = (epsilon * share for share in SHARES)
    command = [
        sys.executable, "-m", "streams.ops.cli", "train", str(data), "--out", str(out),
        "--epochs", "1", "--batch-size", "1024", "--log-level", "WARNING",
        "--dp-epsilon", f"{sgd:g}", "--dp-vocab-epsilon", f"{vocabulary:g}",
        "--dp-memory-epsilon", f"{memory:g}", "--dp-validation-epsilon", f"{epsilon:g}",
        "--dp-delta", f"{delta / 3:g}",
    ]  # fmt: skip
    started = time.monotonic()
    subprocess.run(command, check=True)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/diginetica"))
    parser.add_argument("--epsilons", default="0.5,1,2,4,8")
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--out", type=Path, default=Path("runs/dp-curve"))
    args = parser.parse_args()
    print("| epsilon (run) | - | - | pairs | mix | P@20 | MRR@20 | HR@10 | serve s | train s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for text in [e for e in args.epsilons.split(",") if e]:
        run = args.out / f"eps{text}"
        seconds = train(args.data, run, float(text), args.delta)
        print(f"{served_row(args.data, run)} {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
