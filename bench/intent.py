"""Purchase intent on RetailRocket: from a session prefix, will the session still buy?

Each prefix of a session that holds no purchase yet is one case; its label is
whether a purchase follows later in the session. Sessions are split in time: the
first 80 % (by first event) train, the last 20 % test (``--split val`` instead
holds out the last 10 % of the training sessions, to choose settings without
looking at test). Two models, same run:

* river: ``online_learning.intent.IntentModel`` (StandardScaler |
  LogisticRegression), learned online (one pass, time order) on
  ``intent_features`` of the prefix: counts per event type, length,
  add-to-carts, distinct items, minutes since the session started and the last
  event type (the function the stream calls too, there with its own counters);
* joint: a ``SequenceScorer`` (items, event types, time gaps) trained on
  next-item prediction over every training session, and at the same time a
  small intent head that reads the scorer's hidden state after each event
  together with the standardised ``intent_features`` of that prefix (what river
  reads), trained with class-weighted binary cross-entropy; mean and standard
  deviation over ``--seeds``.

An optional ablation (``--ablation-epochs N``) trains the same head without the
state, to tell the shared representation's share from the features'.

Run: ``.venv/bin/python bench/intent.py`` (``--split val`` to compare settings;
``--ablation-epochs 8`` for the ablation).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import rankdata
from torch import nn

from model.batches import HistoryBatch, gap_bucket, pad_histories
from model.config import ScorerConfig
from model.scorer import SequenceScorer
from model.sessions import Session, load_sessions
from model.training.train import next_item_loss
from model.vocab import ItemVocab
from online_learning.intent import EVENT_TYPES, IntentModel, intent_features

DATA = Path("../shared/data/retailrocket-sample/events.csv.gz")
MAX_LEN = 50
#: Index 1 of the item vocabulary: items the training sessions never showed (a third of
#: the test events), so that they all share one embedding instead of borrowing a real item's.
UNKNOWN = "<unknown>"


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
    """The online baseline: one pass over the training cases in time order."""
    model = IntentModel()
    for session in train:
        for n, label in cases(session):
            model.learn_one(features(session, n), bool(label))
    return model.predict_many([features(s, n) for s in test for n, _ in cases(s)])


def _batch(sessions: Sequence[Session], vocab: ItemVocab, max_len: int) -> HistoryBatch:
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


def _labels(sessions: Sequence[Session], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) float32 labels and bool mask of the cases, at position prefix length - 1."""
    labels, mask = (
        torch.zeros(len(sessions), width),
        torch.zeros(len(sessions), width, dtype=torch.bool),
    )
    for row, session in enumerate(sessions):
        for n, label in cases(session):
            if n <= width:
                labels[row, n - 1], mask[row, n - 1] = label, True
    return labels, mask


class Standardiser:
    """Per-position ``intent_features`` of sessions, standardised with training statistics.

    River's pipeline standardises its inputs too; the head gets the same numbers.
    """

    def __init__(self, train: Sequence[Session]) -> None:
        rows = [self._row(features(s, n)) for s in train for n, _ in cases(s)]
        matrix = np.array(rows, dtype=np.float32)
        self.mean = matrix.mean(axis=0)
        self.std = np.maximum(matrix.std(axis=0), 1e-6)

    @staticmethod
    def _row(values: dict[str, float]) -> list[float]:
        return [values[key] for key in sorted(values)]

    @property
    def width(self) -> int:
        """Number of features F."""
        return len(self.mean)

    def __call__(self, sessions: Sequence[Session], width: int) -> torch.Tensor:
        """(B, T, F) float32 features of each session's prefix ending at position t."""
        out = np.zeros((len(sessions), width, self.width), dtype=np.float32)
        for row, session in enumerate(sessions):
            for t in range(min(len(session.items), width)):
                out[row, t] = self._row(features(session, t + 1))
        out = (out - self.mean) / self.std
        return torch.from_numpy(out)


class IntentHead(nn.Module):
    """Intent logit (B, T) from hidden states (B, T, D) and prefix features (B, T, F).

    The features enter beside the state (not through the embedding), so the head can
    always fall back on what river's logistic regression reads. The state passes a
    narrow projection with dropout first: with a few hundred buying sessions, a wide
    state lets the head memorise the items of buyers (validation AUC falls from the
    second epoch on). ``state_width=0`` ignores the state (the ablation).
    """

    def __init__(
        self, d_model: int, n_features: int, *, state_width: int, state_dropout: float
    ) -> None:
        super().__init__()
        self.state = (
            nn.Sequential(nn.Dropout(state_dropout), nn.Linear(d_model, state_width))
            if state_width
            else None
        )
        self.mlp = nn.Sequential(
            nn.Linear(state_width + n_features, d_model), nn.GELU(), nn.Linear(d_model, 1)
        )

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) states and (B, T, F) features -> (B, T) logits."""
        inputs = x if self.state is None else torch.cat([self.state(h), x], dim=-1)
        out: torch.Tensor = self.mlp(inputs).squeeze(-1)
        return out


@dataclass(frozen=True)
class JointConfig:
    """Settings of the joint model (defaults: the setting chosen on ``--split val``).

    Attributes:
        d_model: width of the scorer and the head.
        epochs: passes over the training sessions.
        intent_weight: lambda in loss = next-item loss + lambda * intent BCE.
        pos_weight: weight of a positive case in the BCE; None = negatives / positives
            of the training cases (about 23 here).
        negatives: sampled negatives of the next-item softmax; 0 = full softmax.
        repeat: the scorer's repeat head.
        state_width: the hidden state's projection in the head.
        state_dropout: dropout on the hidden state before that projection.
    """

    d_model: int = 64
    epochs: int = 3
    intent_weight: float = 1.0
    pos_weight: float | None = None
    negatives: int = 0
    repeat: bool = False
    state_width: int = 1
    state_dropout: float = 0.5
    batch_size: int = 128
    learning_rate: float = 1e-3


@dataclass
class Joint:
    """A trained scorer, its intent head, and the vocabulary and features they read."""

    scorer: SequenceScorer
    head: IntentHead
    vocab: ItemVocab
    standardise: Standardiser

    def scores(self, sessions: Sequence[Session]) -> np.ndarray:
        """P(purchase later) of every case of ``sessions``, in :func:`cases` order."""
        self.scorer.eval()
        self.head.eval()
        out: list[float] = []
        with torch.inference_mode():
            for start in range(0, len(sessions), 512):
                chunk = sessions[start : start + 512]
                batch = _batch(chunk, self.vocab, MAX_LEN)
                x = self.standardise(chunk, batch.items.shape[1])
                probs = torch.sigmoid(self.head(self.scorer.hidden(batch), x)).tolist()
                for row, session in enumerate(chunk):
                    # Prefixes beyond MAX_LEN events read the state at event MAX_LEN.
                    out += [probs[row][min(n, MAX_LEN) - 1] for n, _ in cases(session)]
        return np.array(out)


OnEpoch = Callable[[int, Joint], None]


def _build(train: Sequence[Session], config: JointConfig) -> Joint:
    """An untrained joint model; item index 1 is :data:`UNKNOWN`."""
    vocab = ItemVocab.build([[UNKNOWN], *(s.items for s in train)])
    scorer = SequenceScorer(
        ScorerConfig(
            n_items=len(vocab),
            d_model=config.d_model,
            n_heads=2,
            max_len=MAX_LEN,
            repeat=config.repeat,
        )
    )
    standardise = Standardiser(train)
    head = IntentHead(
        config.d_model,
        standardise.width,
        state_width=config.state_width,
        state_dropout=config.state_dropout,
    )
    return Joint(scorer, head, vocab, standardise)


def _loss(
    joint: Joint,
    chunk: Sequence[Session],
    config: JointConfig,
    *,
    pos_weight: torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """Next-item loss + intent_weight * class-weighted BCE over the chunk's cases."""
    batch = _batch(chunk, joint.vocab, MAX_LEN)
    target, mask = _labels(chunk, batch.items.shape[1])
    loss = torch.zeros(())
    if joint.head.state is not None:  # the ablation reads no state: skip training it
        loss = next_item_loss(joint.scorer, batch, negatives=config.negatives, generator=generator)
    if mask.any():
        x = joint.standardise(chunk, target.shape[1])
        logits = joint.head(joint.scorer.hidden(batch), x)
        intent = F.binary_cross_entropy_with_logits(
            logits[mask], target[mask], pos_weight=pos_weight
        )
        loss = loss + config.intent_weight * intent
    return loss


def fit_joint(
    train: Sequence[Session],
    config: JointConfig,
    *,
    generator: torch.Generator,
    on_epoch: OnEpoch | None = None,
) -> Joint:
    """Train scorer and head together on all of ``train`` (next item) and its cases (intent)."""
    joint = _build(train, config)
    labels = [label for s in train for _, label in cases(s)]
    # Purchases are rare (4 % of cases): without weighting the head learns the base rate.
    pos_weight = torch.tensor(
        config.pos_weight
        if config.pos_weight is not None
        else (len(labels) - sum(labels)) / sum(labels)
    )
    params = [*joint.scorer.parameters(), *joint.head.parameters()]
    optimizer = torch.optim.Adam(params, lr=config.learning_rate)
    sessions = [s for s in train if len(s.items) >= 2]
    for epoch in range(1, config.epochs + 1):
        joint.scorer.train()
        joint.head.train()
        order = torch.randperm(len(sessions), generator=generator).tolist()
        for start in range(0, len(order), config.batch_size):
            chunk = [sessions[i] for i in order[start : start + config.batch_size]]
            loss = _loss(joint, chunk, config, pos_weight=pos_weight, generator=generator)
            if loss.requires_grad:
                optimizer.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
        if on_epoch is not None:
            on_epoch(epoch, joint)
    return joint


def joint_scores(
    train: Sequence[Session], test: Sequence[Session], config: JointConfig, seed: int
) -> np.ndarray:
    """Scores of the test cases by a joint model trained with ``seed``."""
    torch.manual_seed(seed)  # initialisation and dropout
    joint = fit_joint(train, config, generator=torch.Generator().manual_seed(seed))
    return joint.scores(test)


def split(
    sessions: list[Session], which: Literal["val", "test"]
) -> tuple[list[Session], list[Session]]:
    """(train, evaluation) sessions in time order: test = last 20 %, val = last 10 % of the rest."""
    train = sessions[: int(len(sessions) * 0.8)]
    if which == "test":
        return train, sessions[len(train) :]
    cut = int(len(train) * 0.9)
    return train[:cut], train[cut:]


def _row(name: str, runs: list[tuple[float, float]], seconds: float) -> str:
    """A table row: mean ± sd over runs (sd only for several runs)."""
    roc, pr = np.array(runs).T
    if len(runs) == 1:
        return f"| {name} | {roc[0]:.3f} | {pr[0]:.3f} | {seconds:.0f} |"
    return (
        f"| {name} | {roc.mean():.3f} ± {roc.std(ddof=1):.3f} | "
        f"{pr.mean():.3f} ± {pr.std(ddof=1):.3f} | {seconds:.0f} |"
    )


def _parse() -> argparse.Namespace:
    defaults = JointConfig()
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--split", choices=("val", "test"), default="test")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--d-model", type=int, default=defaults.d_model)
    parser.add_argument("--intent-weight", type=float, default=defaults.intent_weight)
    parser.add_argument(
        "--pos-weight", type=float, default=None, help="default: negatives / positives"
    )
    parser.add_argument("--state-width", type=int, default=defaults.state_width)
    parser.add_argument("--state-dropout", type=float, default=defaults.state_dropout)
    parser.add_argument(
        "--ablation-epochs",
        type=int,
        default=0,
        help="also train the head without the state (features only) this long; 0 = skip",
    )
    return parser.parse_args()


def _arms(args: argparse.Namespace) -> list[tuple[str, JointConfig]]:
    """The joint model, and the head without the state when asked (does the state help?)."""
    config = JointConfig(
        d_model=args.d_model,
        epochs=args.epochs,
        intent_weight=args.intent_weight,
        pos_weight=args.pos_weight,
        state_width=args.state_width,
        state_dropout=args.state_dropout,
    )
    arms = [(f"joint: next item + intent head, {args.epochs} epochs", config)]
    if args.ablation_epochs:
        ablation = replace(config, state_width=0, epochs=args.ablation_epochs)
        arms.append(
            (f"ablation: same head, features only, {args.ablation_epochs} epochs", ablation)
        )
    return arms


def main() -> None:
    # The bench shares a small CPU; one thread keeps it from starving other jobs.
    torch.set_num_threads(1)
    args = _parse()
    sessions = sorted(load_sessions(DATA), key=lambda s: s.timestamps[0])
    train, test = split(sessions, args.split)
    labels = np.array([label for s in test for _, label in cases(s)])
    arms = _arms(args)
    print(
        f"{args.split} cases: {len(labels)}, positives: {int(labels.sum())} "
        f"({100 * labels.mean():.1f} %); seeds {args.seeds}; joint: {arms[0][1]}\n"
    )
    print("| model | ROC-AUC | PR-AUC | seconds (per seed) |\n|---|---|---|---|")
    started = time.perf_counter()
    scores = river_scores(train, test)
    metrics = [(roc_auc(scores, labels), average_precision(scores, labels))]
    print(_row("river logistic regression (online)", metrics, time.perf_counter() - started))
    for name, config in arms:
        started, metrics = time.perf_counter(), []
        for seed in args.seeds:
            scores = joint_scores(train, test, config, seed)
            metrics.append((roc_auc(scores, labels), average_precision(scores, labels)))
        seconds = (time.perf_counter() - started) / len(args.seeds)
        print(_row(name, metrics, seconds), flush=True)
    print(f"| base rate (PR-AUC of a random ranking) | 0.500 | {labels.mean():.3f} | |")


if __name__ == "__main__":
    main()
