"""The ``intentstream`` command line: brokers, topics, worker, events, catalogue, dead letters,
models, data.

Run ``intentstream --help``; global options come before the command
(``intentstream --bootstrap-server HOST:PORT tail``). Every failure the user can fix
ends in one line on stderr naming the flag or ``INTENTSTREAM_*`` variable to change,
with exit status 2 (``streams.ops.failures``); the Kafka clients' own logs show only
with ``--verbose``. Each command's arguments are in ``streams.ops.arguments``, its
handler in ``streams.ops.commands``; this module binds them to the command's name.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.logging import RichHandler

from streams.ops import parser
from streams.ops.ads import add_ads_parser, cmd_ads
from streams.ops.arguments.data import add_data_parser, add_replay_parser, add_report_parser
from streams.ops.arguments.models import add_evaluate_parser, add_model_parser, add_train_parser
from streams.ops.arguments.processes import (
    add_demo_parser,
    add_process_parsers,
    add_status_parser,
)
from streams.ops.arguments.verbs import add_verb_parsers
from streams.ops.commands.data import cmd_data, cmd_replay, cmd_report
from streams.ops.commands.models import cmd_evaluate, cmd_model, cmd_train
from streams.ops.commands.processes import (
    cmd_broker,
    cmd_demo,
    cmd_keygen,
    cmd_learn,
    cmd_rewrap,
    cmd_status,
    cmd_topics,
    cmd_worker,
)
from streams.ops.commands.verbs import (
    cmd_config,
    cmd_dlq,
    cmd_erase,
    cmd_items,
    cmd_send,
    cmd_tail,
)
from streams.ops.failures import EXIT_USAGE, explain, say
from streams.ops.parser import AddParsers, Command
from streams.settings import Settings, unknown_variables

log = logging.getLogger("intentstream")

#: Loggers of the Kafka and Faust client libraries: a broker that does not answer makes
#: them log dozens of lines a second, which only ``--verbose`` shows.
CLIENT_LOGGERS = ("kafka", "aiokafka", "faust", "mode")
#: Of those, the ones a long-running worker or learner keeps at WARNING: their warnings
#: are an operator's signal there (the worker's own level is INTENTSTREAM_WORKER_LOGLEVEL).
PROCESS_LOGGERS = ("aiokafka", "faust", "mode")


def build_settings(args: argparse.Namespace) -> Settings:
    """Environment first, then the explicit command-line flags on top."""
    return Settings(**parser.flag_overrides(args))  # type: ignore[arg-type]


#: Each area's commands with their arguments, in the order ``intentstream --help`` lists them.
ARGUMENTS: tuple[AddParsers, ...] = (
    add_process_parsers, add_replay_parser, add_verb_parsers, add_train_parser,
    add_evaluate_parser, add_demo_parser, add_status_parser, add_report_parser, add_model_parser,
    add_data_parser, add_ads_parser,
)  # fmt: skip

#: Each command's handler, by its name.
HANDLERS: dict[str, Command] = {
    "broker": cmd_broker,
    "topics": cmd_topics,
    "worker": cmd_worker,
    "learn": cmd_learn,
    "keygen": cmd_keygen,
    "rewrap": cmd_rewrap,
    "replay": cmd_replay,
    "tail": cmd_tail,
    "send": cmd_send,
    "erase": cmd_erase,
    "items": cmd_items,
    "dlq": cmd_dlq,
    "config": cmd_config,
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "demo": cmd_demo,
    "status": cmd_status,
    "report": cmd_report,
    "model": cmd_model,
    "data": cmd_data,
    "ads": cmd_ads,
}


#: What ``intentstream --help`` says first.
DESCRIPTION = (
    "Real-time, privacy-preserving recommendations on Kafka. Global options go before the "
    "command (intentstream --bootstrap-server HOST:PORT tail); `intentstream COMMAND --help` "
    "shows a command's own."
)


def build_parser() -> argparse.ArgumentParser:
    """The ``intentstream`` argument parser, each command bound to its handler here."""
    return parser.build_parser(ARGUMENTS, HANDLERS, description=DESCRIPTION)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``intentstream`` console script."""
    args = build_parser().parse_args(argv)
    configure_logging(args)
    for name, closest in unknown_variables(os.environ).items():
        hint = f"; did you mean {closest}?" if closest else ""
        say(f"warning: {name} is not a setting, ignored{hint}")
    if getattr(args, "rate", None) == 0:
        args.rate = None
    settings = None
    try:
        settings = build_settings(args)
        return int(args.func(args, settings))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        message = explain(exc, settings=settings)
        if message is None:  # not one the user can fix: a bug, with its traceback
            log.exception("intentstream %s failed", args.command)
            say(f"error: {type(exc).__name__}: {_first(exc)} (a bug: please report it)")
            return 1
        if args.verbose:
            log.error("%s", exc, exc_info=exc)
        say(f"error: {message}")
        return EXIT_USAGE


def configure_logging(args: argparse.Namespace) -> None:
    """Rich log lines on stderr at ``--log-level``; the client libraries quiet unless
    ``--verbose``."""
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(message)s",
        handlers=[
            RichHandler(console=Console(stderr=True), show_path=False, rich_tracebacks=False)
        ],
    )
    logging.getLogger("faiss").setLevel(logging.WARNING)  # which CPU build it loads
    if args.verbose:
        return
    long_running = args.command in ("worker", "learn")
    for name in CLIENT_LOGGERS:
        quiet = long_running and name in PROCESS_LOGGERS
        logging.getLogger(name).setLevel(logging.WARNING if quiet else logging.CRITICAL + 1)


def _first(exc: BaseException) -> str:
    return str(exc).strip().partition("\n")[0]


if __name__ == "__main__":
    sys.exit(main())
