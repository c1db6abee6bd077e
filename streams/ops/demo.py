"""``intentstream demo``: real shoppers' events in, recommendations out, live.

Starts the embedded broker unless one is given, creates the topics, publishes
the log's items as the shop's catalogue, runs a worker process, replays a real
data set and shows events in, recommendations out, rate, latency, and which
model answered with what online HR@10, until every event is answered. Unless
``--no-model``, a small transformer trains on the log's first part while that
part is replayed, and answers the rest (streams/ops/demo_model.py). It records
the worker's metrics meanwhile and renders them to
``<home>/runs/demo-<time>/report.html`` (``intentstream report``). Ctrl-C or
SIGTERM stops everything it started; nothing is left running. Its local broker
listens on ``--port``, else the kind's default port, else (when another process
holds that) a free one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from streams.brokers import local_broker
from streams.brokers.base import LocalBroker
from streams.brokers.probe import free_port, port_in_use
from streams.errors import ConfigurationError
from streams.kafka.admin import ensure_topics
from streams.ops.ads import publish_campaigns
from streams.ops.catalogue import publish_catalogue
from streams.ops.demo_campaigns import demo_campaigns
from streams.ops.demo_model import DemoTraining
from streams.ops.demo_view import DemoMonitor, event_items, render_summary, watch
from streams.ops.event_log import log_catalogue, read_events
from streams.ops.recording import Recorder
from streams.ops.replay import Pause, replay
from streams.ops.report import write_report
from streams.pipeline.crypto import load_master_key
from streams.pipeline.pseudonyms import load_pseudonym_key
from streams.settings import DEFAULT_PORTS, Settings
from streams.worker.process import read_ready, wait_until_ready, worker_process

log = logging.getLogger(__name__)

#: Data set names and their files under ``Settings.data_dir``.
DATA_SETS: dict[str, str] = {
    "retailrocket": "retailrocket-sample/events.csv.gz",
    "yoochoose": "yoochoose-100k/train.csv.gz",
    "diginetica": "diginetica/train.csv.gz",
}
#: The set that ships inside the package, so a bare clone has a demo (see its README).
BUNDLED_SET = "retailrocket"
BUNDLED_FILE = Path(__file__).with_name("demo_data") / "retailrocket-sample.csv.gz"
#: The demo shop's privacy window: a day, for a shop of some thousands of events a day
#: (docs/privacy.md, "Choosing the window").
DEMO_WINDOW_SECONDS = 86_400.0
#: After the replay ends, how long to wait for the last recommendations.
DRAIN_SECONDS = 120.0


@dataclass(frozen=True)
class DemoOptions:
    """What to replay and how fast (``rate`` and ``speedup`` as in ``replay``), and whether
    a model trains on the log's first part to answer the rest."""

    data: str
    rate: float | None
    speedup: float | None
    limit: int | None
    model: bool = True
    #: Port of the local broker it starts (None: the kind's default, or a free one).
    port: int | None = None


def resolve_data(settings: Settings, data: str) -> Path:
    """The events file of a data-set name (:data:`DATA_SETS`) or of a path.

    A name is looked up in ``settings.data_dir``; the bundled set is used when the
    folder is unset or lacks it, so the demo runs from a bare clone.

    Raises:
        ConfigurationError: no such file, or a set that must first be converted.
    """
    if data not in DATA_SETS:
        path = Path(data)
        if not path.is_file():
            raise ConfigurationError(
                f"no events file at {path}: pass --data with a file or one of {sorted(DATA_SETS)}"
            )
        return path
    if settings.data_dir is not None and (settings.data_dir / DATA_SETS[data]).is_file():
        return settings.data_dir / DATA_SETS[data]
    if data == BUNDLED_SET:
        return BUNDLED_FILE
    folder = settings.data_dir or Path("DIR")
    raise ConfigurationError(
        f"the {data} data set is not converted yet: run `intentstream data convert {data} "
        f"SOURCE {folder / DATA_SETS[data]}` on its public original and set "
        f"INTENTSTREAM_DATA_DIR={folder}"
    )


def run_demo(settings: Settings, options: DemoOptions) -> int:
    """Run the whole demo; returns the process exit code.

    SIGTERM stops it as Ctrl-C does (exit status 143): everything it started is stopped.
    """
    with _terminate_as_interrupt() as terminated:
        try:
            return _run(settings, options)
        except KeyboardInterrupt:
            if terminated:
                log.info("stopped by SIGTERM; everything the demo started is stopped")
                return 128 + signal.SIGTERM
            raise


def _run(settings: Settings, options: DemoOptions) -> int:
    started = time.monotonic()
    path = resolve_data(settings, options.data)
    load_pseudonym_key(settings, create=True)
    load_master_key(settings, create=True)
    run_dir = settings.home / "runs" / f"demo-{time.strftime('%Y%m%dT%H%M%S')}"
    with _broker(settings, port=options.port) as running:
        ensure_topics(running)
        asyncio.run(
            publish_catalogue(running, log_catalogue(read_events(path, limit=options.limit)))
        )
        publish_campaigns(running, demo_campaigns(read_events(path, limit=options.limit)))
        running = running.model_copy(
            update={
                # The demo's catalogue titles are placeholders: nothing to search.
                "text_search": False,
                "privacy_window_seconds": DEMO_WINDOW_SECONDS,
                "ready_file": running.home / "demo-worker.ready",
                # Any free metrics port, so the demo runs beside a worker on the default one.
                "metrics_port": 0,
                # A store of its own: the demo serves its own model, not one published before.
                "model_store": run_dir / "models",
                "model_path": None,
            }
        )
        monitor = DemoMonitor(started_at=started, worker_alive=lambda: True)
        training = None
        try:
            with worker_process(running, log_file=running.home / "demo-worker.log") as worker:
                # While the worker starts: the log's events, for the view's hit rates.
                monitor.split(event_items(path, limit=options.limit))
                log.info("waiting for the worker to join the group and recover its table")
                wait_until_ready(worker, running.ready_file)
                # Only now, so that it does not slow the first recommendation down.
                if options.model:
                    training = _start_training(running, path, run_dir, monitor)
                port = read_ready(running.ready_file)["metrics_port"]
                monitor.worker_alive = lambda: worker.poll() is None
                recording = run_dir / "metrics.jsonl"
                url = f"http://127.0.0.1:{port}/metrics"
                with Recorder([url], recording, on_scrape=monitor.on_metrics):
                    asyncio.run(_replay_and_watch(running, path, options, monitor, training))
        finally:
            if training is not None:
                training.stop()
        render_summary(monitor, settings=running, data=path)
        write_report(recording, run_dir / "report.html", title=f"intentstream demo: {path.name}")
        log.info("report of this run: %s (from %s)", run_dir / "report.html", recording)
        return 0 if monitor.complete else 1


def _start_training(
    settings: Settings, path: Path, run_dir: Path, monitor: DemoMonitor
) -> DemoTraining:
    """Start training the demo's model on the log's first half."""
    log.info(
        "a transformer trains on the first %d events (log: %s)",
        monitor.history_events,
        run_dir / "train.log",
    )
    monitor.trains = True
    return DemoTraining(settings, path, run_dir, events=monitor.history_events)


async def _replay_and_watch(
    settings: Settings,
    path: Path,
    options: DemoOptions,
    monitor: DemoMonitor,
    training: DemoTraining | None,
) -> None:
    async with watch(settings, monitor) as live:
        pause = None
        if training is not None:
            pause = Pause(after=monitor.history_events, until=asyncio.Event())
            waiting = asyncio.create_task(_serve_when_trained(training, monitor, pause))
        stats = await replay(
            settings,
            path,
            rate=options.rate,
            speedup=options.speedup,
            limit=options.limit,
            progress=False,
            on_sent=monitor.on_sent,
            pause=pause,
        )
        monitor.replay_done(stats.sent)
        if pause is not None:
            await waiting
        await live.until_answered(timeout=DRAIN_SECONDS)


async def _serve_when_trained(training: DemoTraining, monitor: DemoMonitor, pause: Pause) -> None:
    """Once the model is published (or failed), let the replay go on; the view says which."""
    monitor.training = training
    try:
        monitor.model_version = await training.served_version()
    finally:
        monitor.training = None
        pause.until.set()


@contextlib.contextmanager
def _broker(settings: Settings, *, port: int | None = None) -> Iterator[Settings]:
    """Use the configured cluster, or start the local broker (and stop it if we started it)."""
    if settings.kafka:
        yield settings
        return
    broker = _local_broker(settings, port)
    already_running = broker.status().running
    address = broker.start()
    try:
        yield settings.model_copy(update={"kafka": address})
    finally:
        if not already_running:
            broker.stop()


def _local_broker(settings: Settings, port: int | None) -> LocalBroker:
    """The demo's local broker: on ``port``, else the default port, else a free one.

    A broker of ours already running on the default port is used as it is; a port
    another process holds is left alone.
    """
    kind = settings.broker_kind
    if port is not None:
        return local_broker(kind, home=settings.home, port=port)
    broker = local_broker(kind, home=settings.home)
    span = 2 if kind == "kafka" else 1  # Apache Kafka's controller takes the next port
    taken = any(port_in_use(DEFAULT_PORTS[kind] + i) for i in range(span))
    if broker.status().running or not taken:
        return broker
    chosen = free_port(span=span)
    log.warning(
        "port %d is taken by another process: the demo's %s broker listens on %d instead "
        "(--port chooses one)",
        DEFAULT_PORTS[kind],
        kind,
        chosen,
    )
    return local_broker(kind, home=settings.home, port=chosen)


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[list[int]]:
    """While inside, SIGTERM interrupts as Ctrl-C does; the list records each SIGTERM.

    The signal is passed on as SIGINT, so that whichever handler Ctrl-C has at that
    moment (asyncio's, which cancels the running task, or Python's KeyboardInterrupt)
    runs, and every ``finally`` stops what the demo started.
    """
    received: list[int] = []

    def interrupt(signum: int, frame: object) -> None:
        received.append(signum)
        os.kill(os.getpid(), signal.SIGINT)

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)
