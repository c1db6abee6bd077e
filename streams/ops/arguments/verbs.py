"""The arguments of the operator's verbs: ``tail``, ``send``, ``erase``, ``items``, ``dlq``,
``config``."""

from __future__ import annotations

from pathlib import Path

from streams.ops.parser import Parents, Subcommands


def add_verb_parsers(sub: Subcommands, parents: Parents) -> None:
    """``tail``, ``send``, ``erase``, ``items``, ``dlq``, ``config``: in this order in --help."""
    for add in (_tail, _send, _erase, _items, _dlq, _config):
        add(sub, parents)


def _tail(sub: Subcommands, parents: Parents) -> None:
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


def _send(sub: Subcommands, parents: Parents) -> None:
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


def _erase(sub: Subcommands, parents: Parents) -> None:
    erase = sub.add_parser(
        "erase", parents=parents.broker(), help="ask for a user's erasure (right to be forgotten)"
    )
    erase.add_argument("user", help="the raw user id, as the shop sends it")


def _items(sub: Subcommands, parents: Parents) -> None:
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


def _dlq(sub: Subcommands, parents: Parents) -> None:
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


def _config(sub: Subcommands, parents: Parents) -> None:
    sub.add_parser(
        "config",
        parents=parents.plain(),
        help="the effective settings, secrets masked, and where each value came from",
    )
