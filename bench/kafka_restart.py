"""Apache Kafka restarted mid-stream under a serving worker: recovery time, lost, duplicated.

Each run starts a fresh broker, a worker (default settings) and the scenario of
``tests/integration/test_kafka_restart.py`` (``tests/integration/restart.py``):
half of the events, the broker stopped (SIGTERM, or SIGKILL with ``--kill``)
and started again on the same port and data, the other half. Outage = stop
begun -> broker ready again; resumed = ready -> the worker's first answer after
it; recovery = ready -> first answer to an event produced after the restart
(later than resumed by any backlog). Every event must be answered once.

Run from the repository root (it imports the test's scenario):
``PYTHONPATH=. .venv/bin/python bench/kafka_restart.py [--events 40000] [--runs 3] [--kill]``
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import tempfile
from pathlib import Path

from kafka_run import ready_worker, run_settings

from streams.brokers import local_broker
from streams.brokers.probe import free_port
from streams.errors import WorkerError
from streams.settings import DEFAULT_HOME
from tests.integration.backlog import shopper_events
from tests.integration.restart import RestartRun, restart_mid_stream

PARTITIONS = 8


def one_run(workdir: Path, events: int, *, hard: bool) -> RestartRun:
    """The scenario once, on a broker of its own (so earlier runs' data cannot slow it)."""
    broker = local_broker(
        "kafka", home=workdir / "kafka", port=free_port(span=2), cache=DEFAULT_HOME
    )
    try:  # stop() also ends a broker whose start() was interrupted
        broker.start()
        settings = run_settings(broker.bootstrap, "restart", workdir, partitions=PARTITIONS)
        with contextlib.ExitStack() as running:
            return restart_mid_stream(
                broker,
                settings,
                shopper_events(events),
                start_worker=lambda: running.enter_context(
                    ready_worker(settings, workdir / "worker.log")
                )[0],
                hard=hard,
                answered_first=events // 10,
            )
    finally:
        broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--kill", action="store_true", help="SIGKILL the broker, not SIGTERM")
    args = parser.parse_args()
    runs: list[RestartRun] = []
    stalled: list[int] = []
    for index in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="intentstream-restart-") as tmp:
            try:
                runs.append(one_run(Path(tmp), args.events, hard=args.kill))
            except WorkerError as exc:  # the known start-up hang: count it, keep its log
                stalled.append(index + 1)
                kept = Path(tempfile.gettempdir()) / f"kafka-restart-stalled-{index + 1}.log"
                shutil.copyfile(Path(tmp) / "worker.log", kept)
                print(f"run {index + 1}: {exc}; worker log in {kept}", flush=True)
            else:
                print(f"run {index + 1}: {runs[-1]}", flush=True)
    print(f"\nruns whose worker stalled before the restart: {stalled or 'none'}")
    if not runs:
        return
    stop = "SIGKILL" if args.kill else "SIGTERM"
    print(f"\n{stop}, {args.events:,} events, {PARTITIONS} partitions")
    print("| | min | median | max |")
    print("|---|---|---|---|")
    for name in ("outage_seconds", "resumed_seconds", "recovery_seconds"):
        values = [getattr(run, name) for run in runs]
        row = f"{min(values):.1f} | {statistics.median(values):.1f} | {max(values):.1f}"
        print(f"| {name.replace('_', ' ')} | {row} |")
    lost = sum(run.lost for run in runs)
    duplicates = sum(run.duplicates for run in runs)
    exits = [code for run in runs for code in run.worker_exit_codes]
    print(f"\nlost {lost}, duplicated {duplicates}, worker exits {exits or 'none'}")


if __name__ == "__main__":
    main()
