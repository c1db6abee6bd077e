"""Runs one Faust worker process in the foreground until SIGINT/SIGTERM.

Run it with ``intentstream worker``; scale out by starting more processes with
the same ``INTENTSTREAM_APP_ID`` (they share the consumer group).
"""

from __future__ import annotations

import logging

import faust

from streams.admin import ensure_topics
from streams.app import create_app
from streams.settings import Settings

log = logging.getLogger(__name__)


def run_worker(settings: Settings) -> None:
    """Create missing topics, then run a worker; returns when it has stopped cleanly."""
    log.info("worker config: %s", settings.redacted())
    ensure_topics(settings)
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=settings.worker_loglevel, quiet=True)
    worker.execute_from_commandline()
