"""Purchase intent on RetailRocket: from a session prefix, will the session still buy?

Each prefix of a session that holds no purchase yet is one case; its label is
whether a purchase follows later in the session. Sessions are split in time: the
first 80 % (by first event) train, the last 20 % test. Two models, same run:

* river: ``online_learning.intent.IntentModel`` (StandardScaler |
  LogisticRegression), learned online (one pass, time order) on
  ``intent_features`` of the prefix: counts per event type, length,
  add-to-carts, distinct items, minutes since the session started and the last
  event type (the function the stream calls too, there with its own counters);
* transformer: the intent head of ``SequenceScorer`` (items, event types, time
  gaps), trained on the same cases with binary cross-entropy.

Run: ``.venv/bin/python bench/intent.py``
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import rankdata

from model.batches import HistoryBatch, gap_bucket, pad_histories
from model.config import ScorerConfig
from model.scorer import SequenceScorer
from model.sessions import Session, load_sessions
from model.vocab import ItemVocab
from online_learning.intent import EVENT_TYPES, IntentModel, intent_features

DATA = Path("../shared/data/retailrocket-sample/events.csv.gz")
MAX_LEN = 50


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mann-Whitney AUC with average ranks for ties."""
    ranks = rankdata(scores)
    pos = labels == 1
    n_pos, n_neg = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """PR-AUC as average precision over the positives."""
    order = np.argsort(-scores, kind="stable")
    hits = labels[order] == 1
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].mean())


def cases(session: Session) -> list[tuple[int, int]]:
    """(prefix length, label) for each prefix before the session's first purchase."""
    first_buy = session.types.index("purchase") if "purchase" in session.types else None
    end = first_buy if first_buy is not None else len(session.items)
    return [(n, int(first_buy is not None)) for n in range(1, end)]


def features(session: Session, n: int) -> dict[str, float]:
    """``intent_features`` of the session's first ``n`` events."""
    kinds = session.types[:n]
    return intent_features(
        [kinds.count(kind) for kind in EVENT_TYPES],
        session_events=n,
        session_carts=kinds.count("add_to_cart"),
        distinct_items=len(set(session.items[:n])),
        last_type=EVENT_TYPES.index(kinds[-1]),
        session_seconds=session.timestamps[n - 1] - session.timestamps[0],
    )


def river_scores(train: list[Session], test: list[Session]) -> np.ndarray:
    model = IntentModel()
    for session in train:
        for n, label in cases(session):
            model.learn_one(features(session, n), bool(label))
    return model.predict_many([features(s, n) for s in test for n, _ in cases(s)])


def _batch(sessions: list[Session], vocab: ItemVocab, max_len: int) -> HistoryBatch:
    """The first ``max_len`` events of each session (so position t is event t)."""
    sessions = [
        Session(s.session_id, s.items[:max_len], s.types[:max_len], s.timestamps[:max_len])
        for s in sessions
    ]
    types = [[EVENT_TYPES.index(k) + 1 for k in s.types] for s in sessions]
    gaps = [
        [0] + [gap_bucket(b - a, 16) for a, b in zip(s.timestamps, s.timestamps[1:], strict=False)]
        for s in sessions
    ]
    items = [[max(i, 1) for i in vocab.encode(s.items)] for s in sessions]
    return pad_histories(items, max_len=max_len, types=types, gaps=gaps)


def _labels(sessions: list[Session], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    labels, mask = (
        torch.zeros(len(sessions), width),
        torch.zeros(len(sessions), width, dtype=torch.bool),
    )
    for row, session in enumerate(sessions):
        for n, label in cases(session):
            if n <= width:
                labels[row, n - 1], mask[row, n - 1] = label, True
    return labels, mask


def transformer_scores(
    train: list[Session], test: list[Session], epochs: int, seed: int
) -> np.ndarray:
    torch.manual_seed(seed)
    vocab = ItemVocab.build(s.items for s in train)
    model = SequenceScorer(ScorerConfig(n_items=len(vocab), d_model=64, n_heads=2, max_len=MAX_LEN))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    useful = [s for s in train if cases(s)]
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for _ in range(0, len(useful), 128):
            order = torch.randperm(len(useful), generator=generator)[:128].tolist()
            chunk = [useful[i] for i in order]
            batch = _batch(chunk, vocab, MAX_LEN)
            labels, mask = _labels(chunk, batch.items.shape[1])
            _, logits = model(batch)
            loss = F.binary_cross_entropy_with_logits(logits[mask], labels[mask])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(test), 512):
            chunk = test[start : start + 512]
            batch = _batch(chunk, vocab, MAX_LEN)
            _, logits = model(batch)
            for row, session in enumerate(chunk):
                # Prefixes beyond MAX_LEN events read the state at event MAX_LEN.
                out += [
                    float(torch.sigmoid(logits[row, min(n, MAX_LEN) - 1]))
                    for n, _ in cases(session)
                ]
    return np.array(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sessions = sorted(load_sessions(DATA), key=lambda s: s.timestamps[0])
    cut = int(len(sessions) * 0.8)
    train, test = sessions[:cut], sessions[cut:]
    labels = np.array([label for s in test for _, label in cases(s)])
    print(
        f"test cases: {len(labels)}, positives: {int(labels.sum())} ({100 * labels.mean():.1f} %)\n"
    )
    print("| model | ROC-AUC | PR-AUC | seconds |\n|---|---|---|---|")
    for name, run in (
        ("river logistic regression (online)", lambda: river_scores(train, test)),
        (
            "transformer intent head",
            lambda: transformer_scores(train, test, args.epochs, args.seed),
        ),
    ):
        started = time.perf_counter()
        scores = run()
        print(
            f"| {name} | {roc_auc(scores, labels):.3f} | "
            f"{average_precision(scores, labels):.3f} | {time.perf_counter() - started:.0f} |",
            flush=True,
        )
    print(f"| base rate (PR-AUC of a random ranking) | 0.500 | {labels.mean():.3f} | |")


if __name__ == "__main__":
    main()
