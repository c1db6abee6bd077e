"""The commands of files: ``replay`` (an events file to the stream), ``report`` (a metrics
recording to HTML), ``data convert`` (a public data set to an events file).

Bound to their names in ``streams.ops.cli``; run e.g. ``intentstream replay events.csv.gz``.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from rich.console import Console

from streams.ops.failures import EXIT_USAGE, CommandError, say
from streams.settings import Settings

console = Console(soft_wrap=True)  # a line stays one line, in a pipe too


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from streams.kafka.admin import ensure_topics
    from streams.ops.replay import replay

    _check_events_file(args.file)
    ensure_topics(settings)
    stats = asyncio.run(
        replay(settings, args.file, rate=args.rate, speedup=args.speedup, limit=args.limit)
    )
    console.print(f"sent {stats.sent} events in {stats.seconds:.1f} s to {settings.events_topic}")
    return 0


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    from streams.ops.report import write_report

    try:
        summary = write_report(args.recording, args.out)
    except (OSError, ValueError) as exc:
        say(f"error: cannot render {args.recording}: {exc}")
        return EXIT_USAGE
    console.print(
        f"report of {summary.events:,.0f} events in {summary.seconds:,.0f} s written to {args.out}"
    )
    return 0


def cmd_data(args: argparse.Namespace, settings: Settings) -> int:
    from streams.ops.convert import convert

    try:
        converted = convert(args.format, args.source, args.out, progress=True)
    except (OSError, ValueError) as exc:
        say(f"error: cannot convert {args.source}: {exc}")
        return EXIT_USAGE
    counts = ", ".join(f"{n:,} {kind}" for kind, n in sorted(converted.types.items()))
    console.print(f"wrote {converted.events:,} events ({counts or 'none'}) to {args.out}")
    return 0


def _check_events_file(path: Path) -> None:
    """Read an events file's first event now: a bad header stops before any broker."""
    from streams.ops.event_log import read_events

    try:
        next(iter(read_events(path, limit=1)), None)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
