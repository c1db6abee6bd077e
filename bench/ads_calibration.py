"""Calibrated click and purchase probabilities for sponsored items, on a later part of a log.

Trains a small served ranker with ``model.training.fit.fit`` (what ``intentstream
train`` runs; the demo's width) on the earlier 70 % of the sessions, given as a
folder split in time, so the run also fits its ``ClickCalibrator`` on its
validation split (the last 10 % of those sessions, every prefix). On the later
30 %, each event with a next event in its session is a case, answered by the list
the checkpoint serves after it (``CheckpointScorer``, the top 100, bfloat16, as a
worker ranks; cases whose history the model does not know go to a worker's
baseline and are left out). Every listed position is a row: click = the shopper's
next event is that item; purchase = they buy it later in the session.

Predictors of the same rows, same run:

* the calibrator: P(click) by rank; P(purchase) by rank and intent, and by rank
  alone (its intent lift left out);
* river ``LogisticRegression`` (after a ``StandardScaler``), learned prequentially
  on the later part's rows in time order (each case predicted, then learned at
  once, its labels taken as known then: a head start) from rank, served score,
  intent, the last event's type and whether the item is in the history;
* the served score as a probability (the mix's next-item probability) for clicks,
  and score x intent for purchases.

Intent is the purchase rate per event type (``NextPurchaseRate``, what workers serve
on this sample), learned on the events in time order, before the case it scores.
ECE uses 10 equal-mass bins (``model.evaluation.calibration``).

Run: ``.venv/bin/python bench/ads_calibration.py [--data EVENTS] [--json OUT]``
(RetailRocket sample by default; about 4 minutes on 2 cores, 3 of them training).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import itertools
import json
import math
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from river import compose, linear_model, preprocessing

from model.calibration import ClickCalibrator
from model.checkpoint import load_checkpoint
from model.evaluation.calibration import expected_calibration_error, log_loss, reliability_bins
from model.serving.baseline import NextPurchaseRate
from model.serving.scorers import CheckpointScorer
from model.sessions import Session, load_sessions
from model.training.fit import fit
from model.training.train import TrainConfig
from online_learning.intent import EVENT_TYPES

DATA = Path("../shared/data/retailrocket-sample/events.csv.gz")
TRAIN_SHARE = 0.7
DEPTH = 100
#: The demo's model: small and quick on a CPU.
SCORER = {"d_model": 64}
#: A fixed number of epochs (patience may stop it earlier), not a time budget: the same
#: run on a busier machine trains the same model.
EPOCHS = 8
HISTORY_LEN = 50
#: The positions where sponsored items compete (the list's top; the relevance floor).
TOP = 20
BUCKETS = ((0, 1), (1, 2), (2, 3), (3, 5), (5, 10), (10, 20), (20, 50), (50, 100))


@dataclass(frozen=True)
class Rows:
    """Every listed position of every answered case, cases in time order."""

    case: np.ndarray
    rank: np.ndarray
    score: np.ndarray
    intent: np.ndarray
    last_type: np.ndarray
    in_history: np.ndarray
    click: np.ndarray
    purchase: np.ndarray
    next_known: np.ndarray


def split_in_time(data: Path, folder: Path) -> tuple[list[Session], list[Session]]:
    """Write the earlier sessions as ``train.csv.gz``, the later as ``test.csv.gz``."""
    sessions = sorted(load_sessions(data), key=lambda s: s.timestamps[0])
    cut = round(len(sessions) * TRAIN_SHARE)
    earlier = {s.session_id for s in sessions[:cut]}
    with gzip.open(data, "rt", newline="") as source:
        rows = list(csv.DictReader(source))
    folder.mkdir(parents=True, exist_ok=True)
    for name, keep in (("train.csv.gz", True), ("test.csv.gz", False)):
        with gzip.open(folder / name, "wt", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(r for r in rows if (r["session_id"] in earlier) == keep)
    return sessions[:cut], sessions[cut:]


def intents(earlier: Sequence[Session], later: Sequence[Session]) -> dict[tuple[int, int], float]:
    """The purchase rate per event type after each later event, learned from events before it."""
    rate = NextPurchaseRate(n_types=len(EVENT_TYPES), purchase_type=EVENT_TYPES.index("purchase"))
    for session in earlier:
        for a, b in itertools.pairwise(session.types):
            rate.learn_one(EVENT_TYPES.index(a), EVENT_TYPES.index(b))
    events = sorted(
        (s.timestamps[t], n, t) for n, s in enumerate(later) for t in range(len(s.items))
    )
    out = {}
    for _, n, t in events:
        types = later[n].types
        if t > 0:
            rate.learn_one(EVENT_TYPES.index(types[t - 1]), EVENT_TYPES.index(types[t]))
        out[(n, t)] = rate.predict_one(EVENT_TYPES.index(types[t]))
    return out


def served_rows(scorer: CheckpointScorer, earlier: list[Session], later: list[Session]) -> Rows:
    """The lists served after each later event, their positions labelled."""
    intent = intents(earlier, later)
    keys = sorted(
        ((s.timestamps[t], n, t) for n, s in enumerate(later) for t in range(len(s.items) - 1))
    )
    histories = [later[n].items[max(0, t + 1 - HISTORY_LEN) : t + 1] for _, n, t in keys]
    lists = scorer.score_many(histories, k=DEPTH)
    columns: dict[str, list[Any]] = {name: [] for name in Rows.__dataclass_fields__}
    for case, ((_, n, t), history, served) in enumerate(zip(keys, histories, lists, strict=True)):
        session = later[n]
        bought = {
            session.items[j]
            for j in range(t + 1, len(session.items))
            if session.types[j] == "purchase"
        }
        seen, known = set(history), scorer.knows(session.items[t + 1])
        for rank, (item, score) in enumerate(served):
            columns["case"].append(case)
            columns["rank"].append(rank)
            columns["score"].append(score)
            columns["intent"].append(intent[(n, t)])
            columns["last_type"].append(session.types[t])
            columns["in_history"].append(item in seen)
            columns["click"].append(item == session.items[t + 1])
            columns["purchase"].append(item in bought)
            columns["next_known"].append(known)
    return Rows(**{name: np.asarray(values) for name, values in columns.items()})


def river_predictions(rows: Rows) -> tuple[np.ndarray, np.ndarray]:
    """P(click) and P(purchase) from river, each case predicted before it is learned."""
    models = [
        compose.Pipeline(preprocessing.StandardScaler(), linear_model.LogisticRegression())
        for _ in range(2)
    ]
    predicted = np.zeros((2, len(rows.case)))
    starts = np.flatnonzero(np.diff(rows.case, prepend=-1))
    ends = np.append(starts[1:], len(rows.case))
    for start, end in zip(starts, ends, strict=True):
        features = [_features(rows, i) for i in range(start, end)]
        for which, (model, labels) in enumerate(
            zip(models, (rows.click, rows.purchase), strict=True)
        ):
            for offset, x in enumerate(features):
                predicted[which, start + offset] = model.predict_proba_one(x).get(True, 0.0)
            for offset, x in enumerate(features):
                model.learn_one(x, bool(labels[start + offset]))
    return predicted[0], predicted[1]


def _features(rows: Rows, i: int) -> dict[str, float]:
    rank, score = int(rows.rank[i]), float(rows.score[i])
    return {
        "log_rank": math.log1p(rank),
        "inverse_rank": 1 / (1 + rank),
        "score": score,
        "log_score": math.log(score + 1e-6),
        "intent": float(rows.intent[i]),
        "in_history": float(rows.in_history[i]),
        **{f"last_{kind}": float(rows.last_type[i] == kind) for kind in EVENT_TYPES},
    }


def measures(predicted: np.ndarray, outcomes: np.ndarray, top: np.ndarray) -> dict[str, float]:
    """ECE (equal-mass, 10 bins) over all positions and the ``top`` ones, log-loss, totals."""
    return {
        "ece": expected_calibration_error(predicted, outcomes),
        "ece_top": expected_calibration_error(predicted[top], outcomes[top]),
        "log_loss": log_loss(predicted, outcomes),
        "predicted_over_observed": float(predicted.sum() / max(outcomes.sum(), 1)),
    }


def by_rank(
    rows: Rows, outcomes: np.ndarray, predictors: dict[str, np.ndarray]
) -> list[dict[str, Any]]:
    """Observed and predicted rates per rank bucket."""
    out = []
    for low, high in BUCKETS:
        inside = (rows.rank >= low) & (rows.rank < high)
        out.append(
            {
                "ranks": f"{low}-{high - 1}" if high - low > 1 else str(low),
                "positions": int(inside.sum()),
                "observed": float(outcomes[inside].mean()),
                **{name: float(p[inside].mean()) for name, p in predictors.items()},
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--json", type=Path, help="write every figure here too")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as work:
        folder, run = Path(work) / "data", Path(work) / "run"
        earlier, later = split_in_time(args.data, folder)
        config = TrainConfig(epochs=EPOCHS, seed=args.seed)
        fit(folder, run, train_config=config, scorer_options=SCORER, progress=False)
        trained = time.monotonic() - started
        checkpoint = load_checkpoint(run)
    calibrator = checkpoint.calibrator
    if calibrator is None:
        raise SystemExit("the run fitted no calibrator")
    rows = served_rows(CheckpointScorer(checkpoint), earlier, later)
    river_click, river_purchase = river_predictions(rows)
    results = report(rows, calibrator, river_click, river_purchase)
    results |= {
        "sessions": {"earlier": len(earlier), "later": len(later)},
        "cases": len(np.unique(rows.case)),
        "positions": len(rows.case),
        "calibrator": calibrator.to_dict(),
        "validation": checkpoint.meta.get("metrics"),
        "seconds": {"training": trained, "total": time.monotonic() - started},
    }
    print_tables(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def report(
    rows: Rows, calibrator: ClickCalibrator, river_click: np.ndarray, river_purchase: np.ndarray
) -> dict[str, Any]:
    """Every predictor's measures, the rates by rank, the calibrator's reliability bins."""
    click, purchase = rows.click.astype(float), rows.purchase.astype(float)
    clicks = {
        "calibrator": calibrator.probabilities(rows.rank),
        "river": river_click,
        "raw score": np.clip(rows.score, 0, 1),
    }
    rank_only = replace(calibrator, intent_points=(), intent_lift=())
    purchases = {
        "calibrator": calibrator.purchase_probabilities(rows.rank, rows.intent),
        "calibrator, rank only": rank_only.purchase_probabilities(rows.rank, rows.intent),
        "river": river_purchase,
        "raw score x intent": np.clip(rows.score * rows.intent, 0, 1),
    }
    top, first = rows.rank < TOP, rows.rank == 0
    known = rows.next_known[first]
    return {
        "next_item_known": {
            "share_of_cases": float(known.mean()),
            "rank_0_clicks_when_known": float(click[first][known].mean()),
        },
        "click": {name: measures(p, click, top) for name, p in clicks.items()},
        "purchase": {name: measures(p, purchase, top) for name, p in purchases.items()},
        "click_by_rank": by_rank(rows, click, clicks),
        "purchase_by_rank": by_rank(rows, purchase, purchases),
        "base_rates": {"click": float(click.mean()), "purchase": float(purchase.mean())},
        "reliability_top": {
            what: {
                name: [vars(b) for b in reliability_bins(p[top], outcomes[top])]
                for name, p in predictors.items()
            }
            for what, predictors, outcomes in (
                ("click", clicks, click),
                ("purchase", purchases, purchase),
            )
        },
    }


def print_tables(results: dict[str, Any]) -> None:
    """The figures as markdown tables."""
    print(
        f"{results['cases']:,} cases, {results['positions']:,} listed positions; "
        f"click rate {results['base_rates']['click']:.4%}, "
        f"purchase rate {results['base_rates']['purchase']:.4%}; the model knew the next item "
        f"in {results['next_item_known']['share_of_cases']:.1%} of the cases (rank 0 clicked "
        f"{results['next_item_known']['rank_0_clicks_when_known']:.4f} of those)\n"
    )
    for what in ("click", "purchase"):
        print(
            f"| P({what}) | ECE, ranks 0-99 | ECE, ranks 0-{TOP - 1} | log-loss | "
            "predicted / observed |\n|---|---|---|---|---|"
        )
        for name, m in results[what].items():
            print(
                f"| {name} | {m['ece']:.5f} | {m['ece_top']:.5f} | {m['log_loss']:.5f} | "
                f"{m['predicted_over_observed']:.2f} |"
            )
        print()
        table = results[f"{what}_by_rank"]
        names = [k for k in table[0] if k not in ("ranks", "positions", "observed")]
        print(f"| ranks | positions | observed | {' | '.join(names)} |")
        print("|---" * (3 + len(names)) + "|")
        for row in table:
            cells = " | ".join(f"{row[n]:.4f}" for n in names)
            print(f"| {row['ranks']} | {row['positions']:,} | {row['observed']:.4f} | {cells} |")
        print()
        reliability = results["reliability_top"][what]
        print(
            f"Reliability, ranks 0-{TOP - 1}, 10 equal-mass bins of each predictor: "
            "mean predicted / observed\n"
        )
        print(f"| bin | {' | '.join(reliability)} |")
        print("|---" * (1 + len(reliability)) + "|")
        for index, bins in enumerate(zip(*reliability.values(), strict=True), 1):
            cells = " | ".join(f"{b['predicted']:.4f} / {b['observed']:.4f}" for b in bins)
            print(f"| {index} | {cells} |")
        print()
    print(f"seconds: {results['seconds']}")


if __name__ == "__main__":
    main()
