"""The arguments of every ``intentstream`` command; the handlers live in ``streams.ops.cli``.

Options that act on every command come before it, spelled as Kafka's own tools spell
them (``intentstream --bootstrap-server HOST:PORT tail``); a command's ``--help`` shows
only the options it acts on. ``--bootstrap`` (the older spelling) and the global options
are still taken after the command.
"""

from __future__ import annotations

import argparse
import importlib.metadata
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NoReturn, TypeAlias

from streams.ops.convert import FORMATS
from streams.settings import Settings

#: Runs one command with its parsed arguments and the settings; returns the exit code.
Command = Callable[[argparse.Namespace, Settings], int]
# argparse has no public name for it, and it is generic only to type checkers.
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (exit status 2), naming the way to help."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


class Parents:
    """The option groups commands share: ``cluster`` for those that talk to a broker,
    ``hidden`` for every command (the global options, also taken after it)."""

    def __init__(self) -> None:
        self.cluster = Parser(add_help=False)
        _cluster_options(self.cluster, default=argparse.SUPPRESS)
        self.hidden = Parser(add_help=False)
        _logging_options(self.hidden, default=argparse.SUPPRESS, shown=False)

    def plain(self) -> list[argparse.ArgumentParser]:
        """Parents of a command that needs no broker."""
        return [self.hidden]

    def broker(self) -> list[argparse.ArgumentParser]:
        """Parents of a command that talks to a broker."""
        return [self.cluster, self.hidden]


def build_parser(handlers: Mapping[str, Command], *, description: str) -> argparse.ArgumentParser:
    """The parser of every command; ``args.func`` is the command's entry in ``handlers``."""
    parser = Parser(prog="intentstream", description=description)
    _cluster_options(parser, default=None)
    _logging_options(parser, default=None, shown=True)
    parser.add_argument("--version", action="version", version=f"intentstream {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parents = Parents()
    for add in (
        _processes, _streams, _operations, _train, _evaluate, _demo, _status, _report, _model,
        _data,
    ):  # fmt: skip
        add(sub, parents)
    for name, command in sub.choices.items():
        command.set_defaults(func=handlers[name])
    return parser


def flag_overrides(args: argparse.Namespace) -> dict[str, object]:
    """The settings the command line sets (``--bootstrap-server``, ``--kind``)."""
    overrides: dict[str, object] = {}
    bootstrap, kind = getattr(args, "bootstrap", None), getattr(args, "kind", None)
    if bootstrap:
        overrides["kafka"] = bootstrap
    if kind:
        overrides["broker_kind"] = kind
    elif bootstrap:
        overrides["broker_kind"] = "kafka"  # an existing cluster is Apache Kafka unless told
    return overrides


def _version() -> str:
    try:
        return importlib.metadata.version("intentstream")
    except importlib.metadata.PackageNotFoundError:  # run from a tree that is not installed
        return "unknown"


def _cluster_options(parser: argparse.ArgumentParser, *, default: object) -> None:
    parser.add_argument(
        "--bootstrap-server",
        "--bootstrap",
        dest="bootstrap",
        metavar="HOST:PORT",
        default=default,
        help="an existing Kafka cluster (INTENTSTREAM_KAFKA); unset = the local broker",
    )
    parser.add_argument(
        "--kind",
        choices=["tansu", "kafka"],
        default=default,
        help="which broker it is (INTENTSTREAM_BROKER_KIND; --bootstrap-server alone: kafka)",
    )


def _logging_options(parser: argparse.ArgumentParser, *, default: object, shown: bool) -> None:
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default="INFO" if default is None else default,
        help="intentstream's own logs (default INFO)" if shown else argparse.SUPPRESS,
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=False if default is None else default,
        help="also show the Kafka clients' own logs, and the whole of an error"
        if shown
        else argparse.SUPPRESS,
    )


def _processes(sub: Subcommands, parents: Parents) -> None:
    broker = sub.add_parser(
        "broker", parents=parents.plain(), help="start/stop/status a local broker"
    )
    broker.add_argument("action", choices=["start", "stop", "status"])
    broker.add_argument(
        "--kind", choices=["tansu", "kafka"], default=argparse.SUPPRESS, help="local broker kind"
    )
    broker.add_argument("--port", type=int, help="listener port (default 9092 tansu, 9192 kafka)")
    topics = sub.add_parser(
        "topics", parents=parents.broker(), help="create missing topics (--check: compare only)"
    )
    topics.add_argument(
        "--check",
        action="store_true",
        help="change nothing: list how the cluster's topics differ from what the product needs "
        "(exit 1 when they do)",
    )
    sub.add_parser("worker", parents=parents.broker(), help="run a stream worker")
    sub.add_parser(
        "learn", parents=parents.broker(), help="learn from the stream and publish model versions"
    )
    sub.add_parser("keygen", parents=parents.plain(), help="create missing key files")
    rewrap = sub.add_parser(
        "rewrap",
        parents=parents.broker(),
        help="rotate the master key: re-wrap every user's data key (stop the workers first)",
    )
    rewrap.add_argument(
        "--new-master-key-file",
        type=Path,
        required=True,
        help="file holding the new master key (64 hex digits, mode 0600; `keygen` makes one)",
    )


def _streams(sub: Subcommands, parents: Parents) -> None:
    replay = sub.add_parser("replay", parents=parents.broker(), help="produce an events file")
    replay.add_argument("file", type=Path, help="canonical events CSV/JSONL (optionally .gz)")
    _add_pace_options(replay)
    tail = sub.add_parser(
        "tail",
        parents=parents.broker(),
        help="print the recommendations in the topic, then exit (--follow: keep printing)",
    )
    tail.add_argument(
        "--topic",
        help="topic to read (default INTENTSTREAM_RECOMMENDATIONS_TOPIC); records of another "
        "topic print as published",
    )
    tail.add_argument(
        "--group", help="consumer group: start at its committed offsets, and commit what is read"
    )
    tail.add_argument("--user", help="only this user's recommendations (their raw user id)")
    tail.add_argument(
        "--follow",
        "-f",
        action="store_true",
        help="keep printing new records until Ctrl-C (from the newest, unless --from-beginning)",
    )
    tail.add_argument(
        "--from-beginning",
        action="store_true",
        help="with --follow: start at the oldest record (without --follow it always does)",
    )
    tail.add_argument("--limit", type=int, help="stop after N records")
    tail.add_argument("--raw", action="store_true", help="print the JSON as produced")


def _operations(sub: Subcommands, parents: Parents) -> None:
    send = sub.add_parser(
        "send",
        parents=parents.broker(),
        help="send one event (JSON) to the events topic, checked against the event schema",
    )
    send.add_argument(
        "event",
        nargs="?",
        default="-",
        help="the event's JSON; event_id and ts default to a new uuid and now (default -: "
        "read it from stdin)",
    )
    erase = sub.add_parser(
        "erase", parents=parents.broker(), help="ask for a user's erasure (right to be forgotten)"
    )
    erase.add_argument("user", help="the raw user id, as the shop sends it")
    items = sub.add_parser("items", help="the shop's item catalogue")
    actions = items.add_subparsers(dest="action", required=True, metavar="ACTION")
    load = actions.add_parser(
        "load",
        parents=parents.broker(),
        help="publish a catalogue file (CSV with a header id,title,... or JSON lines) to the "
        "catalogue topic",
    )
    load.add_argument(
        "file",
        type=Path,
        help="CSV (header: id,title and any of category,price,brand) or JSON lines of items; "
        "optionally gzipped",
    )
    dlq = sub.add_parser(
        "dlq",
        parents=parents.broker(),
        help="print the dead letters with their reasons, then exit (--follow: keep printing)",
    )
    dlq.add_argument(
        "--unseal",
        action="store_true",
        help="open each dead letter's original record with the master key "
        "(INTENTSTREAM_MASTER_KEY or INTENTSTREAM_MASTER_KEY_FILE): it may hold raw user ids",
    )
    dlq.add_argument("--follow", "-f", action="store_true", help="keep printing until Ctrl-C")
    dlq.add_argument("--limit", type=int, help="stop after N dead letters")
    sub.add_parser(
        "config",
        parents=parents.plain(),
        help="the effective settings, secrets masked, and where each value came from",
    )


def _train(sub: Subcommands, parents: Parents) -> None:
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


def _evaluate(sub: Subcommands, parents: Parents) -> None:
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


def _demo(sub: Subcommands, parents: Parents) -> None:
    demo = sub.add_parser(
        "demo", parents=parents.broker(), help="broker + worker + real data, live"
    )
    demo.add_argument(
        "--port",
        type=int,
        help="port of the local broker it starts (default: 9092 for tansu, 9192 for kafka, or "
        "a free one when that is taken)",
    )
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


def _status(sub: Subcommands, parents: Parents) -> None:
    status = sub.add_parser(
        "status", parents=parents.plain(), help="live view of running processes"
    )
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


def _report(sub: Subcommands, parents: Parents) -> None:
    report = sub.add_parser(
        "report", parents=parents.plain(), help="render a metrics recording to an HTML report"
    )
    report.add_argument(
        "recording", type=Path, help="a recording (the demo's runs/*/metrics.jsonl, or --record)"
    )
    report.add_argument("--out", type=Path, default=Path("report.html"), help="HTML file to write")


def _model(sub: Subcommands, parents: Parents) -> None:
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


def _data(sub: Subcommands, parents: Parents) -> None:
    data = sub.add_parser("data", help="convert public data sets to the canonical event CSV")
    actions = data.add_subparsers(dest="action", required=True, metavar="ACTION")
    convert = actions.add_parser(
        "convert",
        parents=parents.plain(),
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
