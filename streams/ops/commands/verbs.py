"""The operator's verbs of ``intentstream``: tail, send, erase, items load, dlq, config.

Bound to their names in ``streams.ops.cli``; run e.g. ``intentstream tail --user u1``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING

import orjson
from rich.console import Console

from streams.ops.failures import CommandError
from streams.ops.parser import flag_overrides
from streams.settings import Settings

if TYPE_CHECKING:
    from streams.client import Delivered, EventProducer

log = logging.getLogger("intentstream")
console = Console(soft_wrap=True)


def cmd_tail(args: argparse.Namespace, settings: Settings) -> int:
    from streams.ops.tail import tail

    printed = tail(
        settings,
        topic=args.topic,
        group=args.group,
        user=args.user,
        # Without --follow: what the topic holds (from the group's offsets with --group).
        from_beginning=args.from_beginning or not args.follow,
        stop_at_end=not args.follow,
        limit=args.limit,
        # Only recommendations have a compact form.
        raw=args.raw or args.topic not in (None, settings.recommendations_topic),
    )
    log.debug("%d record(s)", printed)
    return 0


def cmd_send(args: argparse.Namespace, settings: Settings) -> int:
    if args.event == "-" and sys.stdin.isatty():
        log.info("reading the event's JSON from stdin; end it with Ctrl-D")
    text = sys.stdin.read() if args.event == "-" else args.event
    try:
        event = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise CommandError(f"the event is not JSON: {exc}") from exc
    if not isinstance(event, dict):
        raise CommandError(f"the event must be a JSON object, not {type(event).__name__}")
    event.setdefault("event_id", str(uuid.uuid4()))
    event.setdefault("ts", round(time.time(), 3))
    where = _send_one(
        settings,
        lambda producer: producer.send(event),
        refused="not sent, the worker would dead-letter it",
    )
    console.print(
        f"sent event {where.record_id} to {where.topic} partition {where.partition} "
        f"offset {where.offset}"
    )
    return 0


def cmd_erase(args: argparse.Namespace, settings: Settings) -> int:
    where = _send_one(settings, lambda producer: producer.erase(args.user), refused="not sent")
    console.print(
        f"erasure request {where.record_id} sent to {where.topic} partition {where.partition}; "
        f"its outcome will be on {settings.privacy_audit_topic}"
    )
    return 0


def _send_one(
    settings: Settings, send: Callable[[EventProducer], Future[Delivered]], *, refused: str
) -> Delivered:
    """Send one record with ``send`` and wait until the broker acknowledged it.

    Raises:
        CommandError: The record failed the worker's checks (the message starts with
            ``refused``), or the broker did not acknowledge it.
    """
    from streams.client import EventProducer, InvalidEventError

    with EventProducer(settings) as producer:
        try:
            sent = send(producer)
        except InvalidEventError as exc:
            raise CommandError(f"{refused}: {exc}") from exc
        report = producer.flush()
        if not report.ok:
            raise CommandError(f"not delivered: {report.describe()}")
    return sent.result()


def cmd_items(args: argparse.Namespace, settings: Settings) -> int:
    from streams.kafka.admin import ensure_topics
    from streams.ops.catalogue import publish_items, read_items

    try:
        items = read_items(args.file)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    ensure_topics(settings)
    sent = asyncio.run(publish_items(settings, items))
    console.print(f"published {sent:,} items from {args.file} to {settings.items_topic}")
    return 0


def cmd_dlq(args: argparse.Namespace, settings: Settings) -> int:
    from streams.ops.dlq import print_dead_letters, unsealer

    opener = unsealer(settings) if args.unseal else None
    printed = asyncio.run(
        print_dead_letters(
            settings, out=sys.stdout, follow=args.follow, limit=args.limit, opener=opener
        )
    )
    log.info("%d dead letter(s) in %s", printed, settings.dlq_topic)
    return 0


def cmd_config(args: argparse.Namespace, settings: Settings) -> int:
    from streams.ops.config_view import effective_settings, render

    rows = effective_settings(settings, environ=os.environ, flags=flag_overrides(args))
    sys.stdout.write(render(rows) + "\n")
    return 0
