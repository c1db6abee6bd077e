"""What keeping a shopper's own items newer than the model is worth, on a log's second half.

Each event of the log's second half is checked against the list the served ranker
(``CheckpointScorer``) made for the shopper's previous event, from their last 50
items (as the worker keeps them). Only lists the model made count: a history with
no item the model knows goes to the baseline in a worker. Run with the recent
items outside the vocabulary weighted 0 (left out), ``NEW_ITEMS_WEIGHT`` (the
default) and a larger weight; the shopper's own last 10 distinct items beside it.

Run (the demo's log and a model the demo trained on its first half):
``.venv/bin/python bench/new_items.py --checkpoint
~/.cache/intentstream/runs/demo-<time>/models/<version>
--data streams/ops/demo_data/retailrocket-sample.csv.gz``
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from model.checkpoint import load_checkpoint
from model.serving.scorers import NEW_ITEMS_WEIGHT, CheckpointScorer
from streams.ops.demo_model import history_size
from streams.ops.event_log import read_events

HISTORY_LEN = 50
K = 10


def hit_rates(
    scorer: CheckpointScorer, events: Sequence[tuple[str, str]], second_half_from: int
) -> tuple[float, float, int]:
    """(HR@10 of the model's lists, of the shopper's own last items, checks) on the second half."""
    histories: dict[str, list[str]] = {}
    last: dict[str, tuple[set[str], set[str]]] = {}
    hits = own_hits = checks = 0
    for position, (user, item) in enumerate(events):
        made = last.get(user)
        if position >= second_half_from and made is not None and made[0]:
            checks += 1
            hits += item in made[0]
            own_hits += item in made[1]
        history = histories.setdefault(user, [])
        history.append(item)
        del history[:-HISTORY_LEN]
        if position >= second_half_from - 1:
            [scored] = scorer.score_many([history], k=20)
            own = set(list(dict.fromkeys(reversed(history)))[:K])
            last[user] = ({i for i, _ in scored[:K]}, own)
    return hits / checks, own_hits / checks, checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    args = parser.parse_args()
    checkpoint = load_checkpoint(args.checkpoint)
    events = [
        (str(e["user_id"]), str(e["item_id"])) for e in read_events(args.data) if e.get("item_id")
    ]
    second_half_from = history_size(len(events))
    print("| weight of new items | HR@10, model's lists | own last 10 items | checks |")
    print("|---|---|---|---|")
    for weight in (0.0, NEW_ITEMS_WEIGHT, 0.46):
        scorer = CheckpointScorer(checkpoint, new_items_weight=weight)
        hr, own, checks = hit_rates(scorer, events, second_half_from)
        print(f"| {weight:g} | {100 * hr:.1f} % | {100 * own:.1f} % | {checks:,} |", flush=True)


if __name__ == "__main__":
    main()
