"""The arguments of the commands of models: ``train``, ``evaluate``, ``model``."""

from __future__ import annotations

import argparse
from pathlib import Path

from streams.ops.parser import Parents, Subcommands


def add_train_parser(sub: Subcommands, parents: Parents) -> None:
    train = sub.add_parser(
        "train",
        parents=parents.plain(),
        help="train the sequence scorer (unset options: defaults of TrainConfig/ScorerConfig)",
    )
    train.add_argument(
        "data", type=Path, help="data folder (e.g. ../shared/data/diginetica) or file"
    )
    train.add_argument("--out", type=Path, required=True, help="run folder for checkpoints")
    train.add_argument("--epochs", type=int, help="most epochs (default 30)")
    train.add_argument(
        "--patience", type=int, help="stop after this many epochs without a better validation"
    )
    train.add_argument("--minutes", type=float, help="stop after the epoch that passes this")
    train.add_argument("--batch-size", type=int)
    train.add_argument("--lr", type=float, help="learning rate of the first epoch (default 3e-3)")
    train.add_argument(
        "--lr-half-life",
        type=int,
        help="batches over which the learning rate halves (default 650; 0 = constant)",
    )
    train.add_argument(
        "--negatives", type=int, help="sampled per batch (default 16384; 0 = full softmax)"
    )
    _scorer_options(train)
    train.add_argument("--seed", type=int)
    _dp_options(train)


def _scorer_options(train: argparse.ArgumentParser) -> None:
    """The options of ScorerConfig's shape (unset: its defaults)."""
    train.add_argument(
        "--d-model", type=int, help="width of embeddings and states (default 192; DP runs 128)"
    )
    train.add_argument("--layers", type=int)
    train.add_argument("--dropout", type=float, help="inside the blocks")
    train.add_argument("--embedding-dropout", type=float)
    train.add_argument(
        "--no-repeat",
        dest="repeat",
        action="store_false",
        default=None,
        help="no repeat head (DP runs never have one)",
    )
    train.add_argument(
        "--item-readout",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="score items against a weighted mean of the history's item embeddings",
    )


def _dp_options(train: argparse.ArgumentParser) -> None:
    """The options of a DP-SGD run (``--dp-epsilon`` turns it on)."""
    train.add_argument(
        "--dp-epsilon", type=float, help="train with DP-SGD (Opacus) to this epsilon per session"
    )
    train.add_argument(
        "--dp-negatives", type=int, help="with --dp-epsilon: sampled per step (default 4096)"
    )
    train.add_argument("--dp-delta", type=float, help="with --dp-epsilon (default 1e-5)")
    train.add_argument(
        "--dp-max-grad-norm", type=float, help="per-session clipping norm (default 1.0)"
    )
    train.add_argument("--dp-accountant", choices=["prv", "rdp"], help="default prv")
    train.add_argument(
        "--dp-vocab-epsilon",
        type=float,
        help="with --dp-epsilon: epsilon of the DP vocabulary release, added to the spend "
        "(default 1.0)",
    )
    train.add_argument(
        "--dp-vocab-items", type=int, help="distinct items a session adds to it (default 5)"
    )
    train.add_argument(
        "--dp-memory-epsilon",
        type=float,
        help="with --dp-epsilon: epsilon of the DP release of which items sessions hold near "
        "which (the served ranker's memory), added to the spend (default 1.0)",
    )
    train.add_argument(
        "--dp-validation-epsilon",
        type=float,
        help="with --dp-epsilon: what the validation sessions spend on epoch metrics and the "
        "mix choice (default 1.0)",
    )


def add_evaluate_parser(sub: Subcommands, parents: Parents) -> None:
    evaluate = sub.add_parser("evaluate", parents=parents.plain(), help="SR-GNN protocol table")
    evaluate.add_argument("data", type=Path, help="data folder or canonical events file")
    evaluate.add_argument(
        "--checkpoint",
        type=Path,
        action="append",
        default=[],
        help="run or checkpoint folder to evaluate (repeatable)",
    )
    evaluate.add_argument("--no-baselines", dest="baselines", action="store_false")
    evaluate.add_argument(
        "--stream-baseline",
        action="store_true",
        help="also score the stream baseline as a worker runs it, DP releases on and off",
    )
    evaluate.add_argument(
        "--full-ranking",
        action="store_true",
        help="also score the served ranker over every item, not only its candidates "
        "(INTENTSTREAM_FULL_RANKING makes workers and this table rank every item)",
    )


def add_model_parser(sub: Subcommands, parents: Parents) -> None:
    model = sub.add_parser("model", help="list, show, publish, roll back or prune model versions")
    actions = model.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", parents=parents.plain(), help="versions in the model store")
    show = actions.add_parser(
        "show", parents=parents.plain(), help="one version: lineage, metrics, privacy, files"
    )
    show.add_argument("version", help="a version of the store (see `intentstream model list`)")
    publish = actions.add_parser(
        "publish", parents=parents.broker(), help="import a training checkpoint, announce it"
    )
    publish.add_argument("checkpoint", type=Path, help="run or checkpoint folder of `train`")
    publish.add_argument("--parent", help="version it was derived from (default: none)")
    rollback = actions.add_parser(
        "rollback", parents=parents.broker(), help="announce an older version and make it current"
    )
    rollback.add_argument("version", help="an accepted version (see `intentstream model list`)")
    prune = actions.add_parser(
        "prune",
        parents=parents.plain(),
        help="delete the versions that are neither the current one nor its lineage",
    )
    prune.add_argument(
        "--keep", type=int, default=0, help="also keep the N newest versions (default 0)"
    )
    prune.add_argument(
        "--dry-run", action="store_true", help="say what would be deleted, delete nothing"
    )
