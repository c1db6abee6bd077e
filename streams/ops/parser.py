"""The ``intentstream`` parser's own parts: the global options and the option groups
commands share; each area's commands add their arguments in ``streams.ops.arguments``,
and ``streams.ops.cli`` puts them together with the handlers.

Options that act on every command come before it, spelled as Kafka's own tools spell
them (``intentstream --bootstrap-server HOST:PORT tail``); a command's ``--help`` shows
only the options it acts on. ``--bootstrap`` (the older spelling) and the global options
are still taken after the command.
"""

from __future__ import annotations

import argparse
import importlib.metadata
from collections.abc import Callable, Mapping, Sequence
from typing import NoReturn, TypeAlias

from streams.settings import Settings

#: Runs one command with its parsed arguments and the settings; returns the exit code.
Command = Callable[[argparse.Namespace, Settings], int]
# argparse has no public name for it, and it is generic only to type checkers.
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
#: Adds one area's commands, with their arguments, to the subcommands.
AddParsers: TypeAlias = Callable[[Subcommands, "Parents"], None]


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


def build_parser(
    adders: Sequence[AddParsers], handlers: Mapping[str, Command], *, description: str
) -> argparse.ArgumentParser:
    """The parser of every command, added by ``adders`` in order (the order of ``--help``);
    ``args.func`` is the command's entry in ``handlers``."""
    parser = Parser(prog="intentstream", description=description)
    _cluster_options(parser, default=None)
    _logging_options(parser, default=None, shown=True)
    parser.add_argument("--version", action="version", version=f"intentstream {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parents = Parents()
    for add in adders:
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


def add_pace_options(parser: argparse.ArgumentParser, *, default_rate: float | None = None) -> None:
    """``--rate`` or ``--speedup``, and ``--limit``: how fast and how much of a log to replay."""
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument(
        "--rate",
        type=float,
        default=default_rate,
        help=f"events per second (default: {default_rate or 'as fast as possible'}; 0 = max)",
    )
    pace.add_argument("--speedup", type=float, help="the log's own pace times this factor")
    parser.add_argument("--limit", type=int, help="replay at most N events")


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
