"""The arguments of the commands of files: ``replay``, ``report``, ``data convert``."""

from __future__ import annotations

from pathlib import Path

from streams.ops.convert import FORMATS
from streams.ops.parser import Parents, Subcommands, add_pace_options


def add_replay_parser(sub: Subcommands, parents: Parents) -> None:
    replay = sub.add_parser("replay", parents=parents.broker(), help="produce an events file")
    replay.add_argument("file", type=Path, help="canonical events CSV/JSONL (optionally .gz)")
    add_pace_options(replay)


def add_report_parser(sub: Subcommands, parents: Parents) -> None:
    report = sub.add_parser(
        "report", parents=parents.plain(), help="render a metrics recording to an HTML report"
    )
    report.add_argument(
        "recording", type=Path, help="a recording (the demo's runs/*/metrics.jsonl, or --record)"
    )
    report.add_argument("--out", type=Path, default=Path("report.html"), help="HTML file to write")


def add_data_parser(sub: Subcommands, parents: Parents) -> None:
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
