"""The arguments of every ``intentstream`` command; the handlers live in ``streams.ops.cli``."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeAlias

from streams.ops.convert import FORMATS
from streams.settings import Settings

#: Runs one command with its parsed arguments and the settings; returns the exit code.
Command = Callable[[argparse.Namespace, Settings], int]
# argparse has no public name for it, and it is generic only to type checkers.
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def build_parser(handlers: Mapping[str, Command], *, description: str) -> argparse.ArgumentParser:
    """The parser of every command; ``args.func`` is the command's entry in ``handlers``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--bootstrap", help="existing Kafka cluster (env INTENTSTREAM_KAFKA)")
    common.add_argument("--kind", choices=["tansu", "kafka"], help="local broker kind")
    common.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    parser = argparse.ArgumentParser(prog="intentstream", description=description)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_processes, _streams, _train, _evaluate, _demo, _status, _report, _model, _data):
        add(sub, common)
    for name, command in sub.choices.items():
        command.set_defaults(func=handlers[name])
    return parser


def _processes(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    broker = sub.add_parser("broker", parents=[common], help="start/stop/status a local broker")
    broker.add_argument("action", choices=["start", "stop", "status"])
    broker.add_argument("--port", type=int, help="listener port (default 9092 tansu, 9192 kafka)")
    sub.add_parser("topics", parents=[common], help="create missing topics")
    sub.add_parser("worker", parents=[common], help="run a stream worker")
    sub.add_parser(
        "learn", parents=[common], help="learn from the stream and publish model versions"
    )
    sub.add_parser("keygen", parents=[common], help="create missing key files")
    rewrap = sub.add_parser(
        "rewrap",
        parents=[common],
        help="rotate the master key: re-wrap every user's data key (stop the workers first)",
    )
    rewrap.add_argument(
        "--new-master-key-file",
        type=Path,
        required=True,
        help="file holding the new master key (64 hex digits, mode 0600; `keygen` makes one)",
    )


def _streams(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    replay = sub.add_parser("replay", parents=[common], help="produce an events file")
    replay.add_argument("file", type=Path, help="canonical events CSV/JSONL (optionally .gz)")
    _add_pace_options(replay)
    tail = sub.add_parser("tail", parents=[common], help="print recommendations as they arrive")
    tail.add_argument("--from-beginning", action="store_true")
    tail.add_argument("--limit", type=int, help="stop after N recommendations")
    tail.add_argument("--raw", action="store_true", help="print the JSON as produced")


def _train(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    train = sub.add_parser(
        "train",
        parents=[common],
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
    train.add_argument("--seed", type=int)
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


def _evaluate(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    evaluate = sub.add_parser("evaluate", parents=[common], help="SR-GNN protocol table")
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


def _demo(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    demo = sub.add_parser("demo", parents=[common], help="broker + worker + real data, live")
    demo.add_argument(
        "--data",
        default="retailrocket",
        help="retailrocket | yoochoose | diginetica | a file path (default retailrocket, "
        "bundled unless INTENTSTREAM_DATA_DIR has it)",
    )
    demo.add_argument(
        "--model",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="train a small transformer on the log's first part while it is replayed, and "
        "serve it for the rest (default); --no-model: the stream baseline answers everything",
    )
    _add_pace_options(demo, default_rate=1000.0)


def _status(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    status = sub.add_parser("status", parents=[common], help="live view of running processes")
    status.add_argument(
        "--url",
        action="append",
        help="a process's metrics endpoint (repeatable; default: this host's worker and "
        "learner ports, INTENTSTREAM_METRICS_PORT and INTENTSTREAM_LEARN_METRICS_PORT)",
    )
    status.add_argument(
        "--watch", type=float, metavar="SECONDS", help="refresh every SECONDS until Ctrl-C"
    )
    status.add_argument(
        "--interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="seconds between the two scrapes that rates and percentiles compare (default 1)",
    )
    status.add_argument(
        "--record",
        type=Path,
        metavar="FILE",
        help="with --watch: append every scrape to FILE (a recording for `intentstream report`)",
    )


def _report(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    report = sub.add_parser(
        "report", parents=[common], help="render a metrics recording to an HTML report"
    )
    report.add_argument(
        "recording", type=Path, help="a recording (the demo's runs/*/metrics.jsonl, or --record)"
    )
    report.add_argument("--out", type=Path, default=Path("report.html"), help="HTML file to write")


def _model(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    model = sub.add_parser("model", help="list, publish or roll back model versions")
    actions = model.add_subparsers(dest="action", required=True)
    actions.add_parser("list", parents=[common], help="versions in the model store")
    publish = actions.add_parser(
        "publish", parents=[common], help="import a training checkpoint, announce it"
    )
    publish.add_argument("checkpoint", type=Path, help="run or checkpoint folder of `train`")
    publish.add_argument("--parent", help="version it was derived from (default: none)")
    rollback = actions.add_parser(
        "rollback", parents=[common], help="announce an older version and make it current"
    )
    rollback.add_argument("version", help="an accepted version (see `intentstream model list`)")


def _data(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    data = sub.add_parser("data", help="convert public data sets to the canonical event CSV")
    actions = data.add_subparsers(dest="action", required=True)
    convert = actions.add_parser(
        "convert",
        parents=[common],
        help="an original (RetailRocket, YOOCHOOSE, Diginetica) to a canonical events file; "
        "a malformed row stops it, naming file and line",
    )
    convert.add_argument("format", choices=FORMATS, help="which data set SOURCE is")
    convert.add_argument(
        "source",
        type=Path,
        help="retailrocket: Kaggle's events.csv; yoochoose: the folder of yoochoose-clicks.dat "
        "(and yoochoose-buys.dat); diginetica: train-item-views.csv",
    )
    convert.add_argument(
        "out", type=Path, help="canonical events CSV to write, gzipped (e.g. OUT.csv.gz)"
    )


def _add_pace_options(parser: argparse.ArgumentParser, default_rate: float | None = None) -> None:
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument(
        "--rate",
        type=float,
        default=default_rate,
        help=f"events per second (default: {default_rate or 'as fast as possible'}; 0 = max)",
    )
    pace.add_argument("--speedup", type=float, help="the log's own pace times this factor")
    parser.add_argument("--limit", type=int, help="replay at most N events")
