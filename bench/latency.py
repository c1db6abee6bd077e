"""Event-to-recommendation latency at fixed offered loads, on Apache Kafka.

One ``intentstream worker`` (default settings: baseline scorer, text encoder
loaded) on a local Apache Kafka; RetailRocket events are replayed with
``streams.ops.replay.replay`` at each fixed rate for ``--seconds`` (fresh user ids
per load, so no load's users warm the next). Latency is the worker's own
``latency_ms`` of each recommendation: from the event record's timestamp (set
by the producer when it sent it) to the recommendation being scored. Beside it,
"on the broker": until the recommendation was appended to its topic (the topic
stamps records with ``LogAppendTime``), which adds the delivery. The first 2
seconds of each load are left out (warm-up).

Run: ``.venv/bin/python bench/latency.py [--rates 500 2000 5000] [--seconds 20]``
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer
from kafka.admin import ConfigResource
from kafka_run import fresh_kafka, ready_worker, run_settings

from streams.kafka.admin import admin_client
from streams.kafka.security import client_security
from streams.ops.event_log import read_events
from streams.ops.replay import replay
from streams.settings import Settings

DATA = Path("../shared/data/retailrocket-sample/events.csv.gz")
WARM_UP_SECONDS = 2.0


def _events_file(path: Path, count: int, load: int) -> None:
    """``count`` RetailRocket events with user and event ids unique to this load.

    Each event is stamped with the wall-clock time it is due, as a live shop's
    would be: with the sample's own stamps (months in seconds) the worker would
    close an hourly privacy window every few seconds and refit on each release,
    which a live stream does once an hour.
    """
    base = list(read_events(DATA))
    start = time.time()
    with open(path, "wb") as out:
        for n in range(count):
            event = dict(base[n % len(base)])
            event["user_id"] = f"{event['user_id']}-l{load}-r{n // len(base)}"
            event["event_id"] = f"l{load}-{n}"
            event["ts"] = round(start + n / load, 3)
            out.write(orjson.dumps(event) + b"\n")


def _stamp_on_append(settings: Settings) -> None:
    """Make the broker stamp each recommendation with the time it appended it."""
    with admin_client(settings) as admin:
        config = {"message.timestamp.type": "LogAppendTime"}
        admin.alter_configs(
            [ConfigResource("TOPIC", settings.recommendations_topic, configs=config)]
        )


async def _latencies(
    settings: Settings, prefix: str, want: int, timeout: float
) -> list[tuple[float, float, float]]:
    """``(scored at, latency ms, on-the-broker latency ms)`` of this load's recommendations."""
    consumer = AIOKafkaConsumer(
        settings.recommendations_topic,
        bootstrap_servers=settings.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **client_security(settings),
    )
    await consumer.start()
    out: list[tuple[float, float, float]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < want and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for message in (m for ms in batches.values() for m in ms):
                value = orjson.loads(message.value)
                if value["event_id"].startswith(prefix):
                    event_sent = value["ts"] - value["latency_ms"] / 1000.0
                    on_broker = message.timestamp - 1000.0 * event_sent
                    out.append((value["ts"], value["latency_ms"], on_broker))
    finally:
        await consumer.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=int, nargs="+", default=[500, 2_000, 5_000])
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds per load")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="intentstream-latency-") as tmp:
        workdir = Path(tmp)
        with fresh_kafka(workdir) as bootstrap:
            settings = run_settings(bootstrap, "latency", workdir)
            _stamp_on_append(settings)
            with ready_worker(settings, workdir / "worker.log") as (_, url):
                print(f"worker ready, metrics on {url}")
                for rate in args.rates:
                    count = int(rate * args.seconds)
                    path = workdir / f"load-{rate}.jsonl"
                    _events_file(path, count, rate)
                    stats = asyncio.run(replay(settings, path, rate=rate, progress=False))
                    found = asyncio.run(_latencies(settings, f"l{rate}-", count, timeout=300))
                    if not found:
                        raise RuntimeError(f"no recommendation for the {rate}/s load arrived")
                    start = min(ts for ts, _, _ in found)
                    span = max(ts for ts, _, _ in found) - start
                    print(f"{rate}/s: {len(found):,} answers over {span:.1f} s")
                    kept = np.array(
                        [(ms, b) for ts, ms, b in found if ts - start >= WARM_UP_SECONDS]
                    )
                    scored = np.percentile(kept[:, 0], [50, 95, 99, 100])
                    on_broker = np.percentile(kept[:, 1], [50, 95, 99, 100])
                    rows.append((rate, stats.rate, len(found), count, scored, on_broker))
    print(
        "| offered events/s | sent events/s | answered | scored: p50 / p95 / p99 / max ms "
        "| on the broker: p50 / p95 / p99 / max ms |\n|---|---|---|---|---|"
    )
    for rate, sent, answered, count, scored, on_broker in rows:
        print(
            f"| {rate:,} | {sent:,.0f} | {answered:,} of {count:,} | "
            f"{' / '.join(f'{v:.1f}' for v in scored)} | "
            f"{' / '.join(f'{v:.1f}' for v in on_broker)} |"
        )


if __name__ == "__main__":
    main()
