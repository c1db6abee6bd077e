"""The arguments of the commands that set up and run the processes: ``broker``, ``topics``,
``worker``, ``learn``, ``keygen``, ``rewrap``, ``demo``, ``status``."""

from __future__ import annotations

import argparse
from pathlib import Path

from streams.ops.parser import Parents, Subcommands, add_pace_options


def add_process_parsers(sub: Subcommands, parents: Parents) -> None:
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


def add_demo_parser(sub: Subcommands, parents: Parents) -> None:
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
    add_pace_options(demo, default_rate=1000.0)


def add_status_parser(sub: Subcommands, parents: Parents) -> None:
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
