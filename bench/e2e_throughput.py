"""End-to-end events/s of the worker on each local broker, beside a raw pass-through.

Preloads N real events (RetailRocket, repeated with fresh user ids when N is
larger) into a fresh topic, then measures, in the same run and on the same broker:

* ``raw pass-through``: aiokafka getmany -> produce the same bytes -> await, no
  decoding (the client/broker limit on this machine);
* ``Faust pass-through``: a Faust agent with the worker's settings, batching and
  batched sends, forwarding each event's bytes (the framework's limit;
  ``bench/faust_passthrough.py``);
* ``worker``: a real ``intentstream worker`` process (validation, pseudonyms,
  feature table + changelog, scoring, recommendation out) with the stream-learned
  baseline scorer, and with ``--model CHECKPOINT`` a second worker (own consumer
  group and outputs, same input) scoring with that trained transformer.

Throughput = events / (last output time - first output time), from the outputs'
own produce stamps, so worker start-up and group joins are not counted. Each
worker's CPU seconds (user + system, from its ready signal to its last output)
per 1,000 events say what a worker costs, and move less with other load than events/s.

Run: ``.venv/bin/python bench/e2e_throughput.py --events 100000 --brokers kafka tansu``;
with the transformer (Diginetica events, so the checkpoint knows the items):
``.venv/bin/python bench/e2e_throughput.py --events 30000 --brokers kafka
--data ../shared/data/diginetica/train.csv.gz --model runs/diginetica``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from hotspots import py_spy, self_time_by_module
from kafka.admin import KafkaAdminClient, NewTopic

from streams.brokers import local_broker
from streams.brokers.probe import free_port
from streams.kafka.admin import ensure_topics
from streams.kafka.produce import produce_records
from streams.kafka.security import client_security
from streams.ops.event_log import read_events
from streams.settings import DEFAULT_HOME, BrokerKind, Settings
from streams.worker.process import wait_until_ready, worker_process

DATA = Path("../shared/data/retailrocket-sample/events.csv.gz")
KEY = "bench-pseudonym-key-0123456789abcdef"
MASTER_KEY = "ab" * 32
#: Seconds py-spy samples a worker with ``--profile``, from its ready signal (keep N large).
PROFILE_SECONDS = 12
#: Hours of event time the ``live`` events span (:func:`_events`).
LIVE_HOURS = 3


@dataclass(frozen=True)
class Result:
    broker: str
    pipeline: str
    events: int
    seconds: float
    #: CPU seconds (user + system) the worker process spent from ready to its last output.
    cpu_seconds: float | None = None

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    @property
    def cpu_per_thousand(self) -> str:
        """CPU seconds per 1,000 events, or blank where not measured."""
        return "" if self.cpu_seconds is None else f"{1000 * self.cpu_seconds / self.events:.3f}"


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _events(n: int, path: Path, *, event_time: str = "live") -> list[tuple[bytes, bytes]]:
    """``n`` events of ``path`` as (key, value), repeated with fresh user and event ids.

    ``event_time="live"`` stamps them evenly over the :data:`LIVE_HOURS` before now,
    in the log's order, as a live shop's events are stamped: the worker closes and
    releases a few hourly privacy windows on the way, so its baseline answers from
    released counts. ``"log"`` keeps the log's own stamps, a week in a few seconds:
    a release every few hundred events, where a live stream makes one an hour.
    """
    base = list(read_events(path))
    first = time.time() - LIVE_HOURS * 3600
    out: list[tuple[bytes, bytes]] = []
    for round_ in range(n // len(base) + 1):
        for event in base[: n - len(out)]:
            copy = {
                **event,
                "user_id": f"{event['user_id']}-r{round_}",
                "event_id": f"{event['event_id']}-r{round_}",
            }
            if event_time == "live":
                copy["ts"] = round(first + len(out) * LIVE_HOURS * 3600 / n, 3)
            out.append((copy["user_id"].encode(), orjson.dumps(copy)))
    return out


async def _raw_pass_through(bootstrap: str, source: str, sink: str, n: int) -> float:
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 << 20,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=512 * 1024)
    await consumer.start()
    await producer.start()
    try:
        done, started = 0, None
        while done < n:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            if started is None and batches:
                started = time.perf_counter()
            futures = [
                await producer.send(sink, m.value, key=m.key)
                for tp, messages in batches.items()
                for m in messages
            ]
            await asyncio.gather(*futures)
            done += len(futures)
        return time.perf_counter() - (started or time.perf_counter())
    finally:
        await consumer.stop()
        await producer.stop()


async def _output_span(
    settings: Settings, n: int, timeout: float, worker: subprocess.Popen[bytes]
) -> tuple[int, float]:
    """Wait for n recommendations; return (count, last ts - first ts).

    Raises:
        RuntimeError: the worker exited first.
    """
    consumer = AIOKafkaConsumer(
        settings.recommendations_topic,
        settings.dlq_topic,
        bootstrap_servers=settings.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **client_security(settings),
    )
    await consumer.start()
    stamps: list[float] = []
    deadline = time.monotonic() + timeout
    try:
        while len(stamps) < n and time.monotonic() < deadline:
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited with code {worker.returncode}")
            batches = await consumer.getmany(timeout_ms=500, max_records=10000)
            for messages in batches.values():
                stamps.extend(m.timestamp / 1000 for m in messages)
    finally:
        await consumer.stop()
    return len(stamps), (max(stamps) - min(stamps)) if stamps else float("nan")


def _settings(
    kind: BrokerKind, bootstrap: str, run: str, variant: str, **extra: object
) -> Settings:
    """One worker variant's settings: shared input topic, its own group and outputs."""
    return Settings(
        kafka=bootstrap,
        broker_kind=kind,
        app_id=f"bench-{run}-{variant}",
        events_topic=f"bench-events-{run}",
        recommendations_topic=f"bench-recs-{run}-{variant}",
        dlq_topic=f"bench-dlq-{run}-{variant}",
        items_topic=f"bench-items-{run}",
        pseudonym_key=KEY,
        master_key=MASTER_KEY,
        metrics_port=0,
        ready_file=Path(tempfile.gettempdir()) / f"bench-{run}-{variant}.ready",
        **extra,  # type: ignore[arg-type]
    )


@contextlib.contextmanager
def _faust_pass_through(settings: Settings, log_file: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``bench/faust_passthrough.py`` as a child process, stopped at the end."""
    with open(log_file, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("faust_passthrough.py"))],
            env={**os.environ, **settings.as_environment()},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)


def run_one(
    kind: BrokerKind,
    n: int,
    partitions: int,
    workdir: Path,
    *,
    data: Path,
    model: Path | None,
    profile: Path | None,
    event_time: str,
) -> list[Result]:
    broker = local_broker(kind, home=workdir / kind, port=free_port(span=2), cache=DEFAULT_HOME)
    bootstrap = broker.start()
    try:
        run = uuid.uuid4().hex[:8]
        variants = {"baseline": _settings(kind, bootstrap, run, "baseline", partitions=partitions)}
        if model is not None:
            variants["transformer"] = variants["baseline"].model_copy(
                update={
                    "app_id": f"bench-{run}-model",
                    "recommendations_topic": f"bench-recs-{run}-model",
                    "dlq_topic": f"bench-dlq-{run}-model",
                    "model_path": model,
                    "ready_file": Path(tempfile.gettempdir()) / f"bench-{run}-model.ready",
                }
            )
        for settings in variants.values():
            ensure_topics(settings)
        settings = variants["baseline"]
        sink = f"bench-sink-{run}"
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        admin.create_topics([NewTopic(sink, partitions, 1)])
        admin.close()
        records = _events(n, data, event_time=event_time)
        asyncio.run(
            produce_records(
                bootstrap,
                settings.events_topic,
                records,
                linger_ms=5,
                max_batch_size=512 * 1024,
                **client_security(settings),
            )
        )
        raw_seconds = asyncio.run(_raw_pass_through(bootstrap, settings.events_topic, sink, n))
        results = [Result(kind, "raw aiokafka pass-through", n, raw_seconds)]
        faust_settings = settings.model_copy(
            update={
                "app_id": f"bench-{run}-faust",
                "recommendations_topic": f"bench-recs-{run}-faust",
            }
        )
        ensure_topics(faust_settings)
        with _faust_pass_through(faust_settings, workdir / f"{kind}-faust.log") as process:
            count, span = asyncio.run(_output_span(faust_settings, n, timeout=900, worker=process))
        results.append(Result(kind, "Faust pass-through agent (batched sends)", count, span))
        for variant, settings in variants.items():
            with contextlib.ExitStack() as running:
                worker = running.enter_context(
                    worker_process(settings, log_file=workdir / f"{kind}-{variant}.log")
                )
                assert settings.ready_file is not None  # from ready on: start-up is not counted
                wait_until_ready(worker, settings.ready_file)
                cpu_at_ready = cpu_seconds(worker.pid)
                if profile is not None:
                    stacks = profile / f"{kind}-{variant}.txt"
                    running.enter_context(py_spy(worker.pid, stacks, seconds=PROFILE_SECONDS))
                count, span = asyncio.run(_output_span(settings, n, timeout=900, worker=worker))
                cpu = cpu_seconds(worker.pid) - cpu_at_ready
            if count < n:
                raise RuntimeError(f"{kind} {variant}: only {count} of {n} outputs arrived")
            results.append(Result(kind, f"intentstream worker, {variant}", count, span, cpu))
        return results
    finally:
        broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--brokers", nargs="+", default=["kafka", "tansu"])
    parser.add_argument("--data", type=Path, default=DATA, help="canonical events file")
    parser.add_argument("--model", type=Path, help="also run a worker on this checkpoint")
    parser.add_argument(
        "--event-time",
        choices=["live", "log"],
        default="live",
        help="stamp events with the time they are made (default) or keep the log's",
    )
    parser.add_argument(
        "--profile", type=Path, help="py-spy each worker; its collapsed stacks go in this folder"
    )
    args = parser.parse_args()
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="intentstream-bench-") as tmp:
        results = [
            r
            for kind in args.brokers
            for r in run_one(
                kind,
                args.events,
                args.partitions,
                Path(tmp),
                data=args.data,
                model=args.model,
                profile=args.profile,
                event_time=args.event_time,
            )
        ]
    print("| broker | pipeline | events | seconds | events/s | worker CPU s / 1,000 events |")
    print("|---|---|---|---|---|---|")
    for r in results:
        cells = f"{r.broker} | {r.pipeline} | {r.events:,} | {r.seconds:.2f} | {r.rate:,.0f}"
        print(f"| {cells} | {r.cpu_per_thousand} |")
    for stacks in sorted(args.profile.glob("*.txt")) if args.profile is not None else []:
        print(f"\nself time of {stacks.stem} (py-spy, {stacks}):")
        for module, share in self_time_by_module(stacks)[:14]:
            print(f"  {share:6.1%}  {module}")


if __name__ == "__main__":
    main()
