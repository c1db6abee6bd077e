"""Soak: a worker at a steady rate for a long time; is its memory flat and its lag bounded?

One ``intentstream worker`` on a local Apache Kafka gets RetailRocket events at
``--rate`` events/s for ``--minutes`` (the sample's ~11k shoppers again and
again, a steady population, with fresh event ids and the current time as event
time). Every ``--every`` seconds it records the worker's resident memory (from
/proc), its consumer lag and p99 latency over the interval (from its metrics).
Memory is judged by the growth from the second quarter of the run to the last
(the first quarter holds warm-up: tables filling, windows opening), and lag by
its maximum and the last sample.

Run: ``.venv/bin/python bench/soak.py [--minutes 30] [--rate 1000] [--csv soak.csv]``
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer
from kafka_run import fresh_kafka, ready_worker, run_settings

from streams.kafka.security import client_security
from streams.ops.event_log import read_events
from streams.ops.status import quantile, scrape
from streams.settings import Settings

DATA = Path("../shared/data/retailrocket-sample/events.csv.gz")
LATENCY = "intentstream_event_latency_seconds"


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def _produce(settings: Settings, rate: float, seconds: float) -> int:
    """Send events at ``rate`` per second for ``seconds``, in 100 ms ticks; returns the count."""
    base = list(read_events(DATA))
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap,
        linger_ms=5,
        max_batch_size=512 * 1024,
        **client_security(settings),
    )
    await producer.start()
    sent, started = 0, time.monotonic()
    try:
        while (elapsed := time.monotonic() - started) < seconds:
            due = int(rate * elapsed) + 1
            futures = []
            while sent < due:
                event = {**base[sent % len(base)], "event_id": f"soak-{sent}", "ts": time.time()}
                value = orjson.dumps(event)
                futures.append(
                    await producer.send(settings.events_topic, value, key=event["user_id"].encode())
                )
                sent += 1
            await asyncio.gather(*futures)
            await asyncio.sleep(0.1)
    finally:
        await producer.stop()
    return sent


async def _sample(
    pid: int, url: str, every: float, until: float, rows: list[tuple[float, ...]]
) -> None:
    start, before = time.monotonic(), scrape(url)
    while time.monotonic() < until:
        await asyncio.sleep(every)
        now = scrape(url)
        lag = now.total("intentstream_consumer_lag_events") or 0.0
        p99 = quantile(now, before, LATENCY, 0.99)
        events = now.total("intentstream_events_total") or 0.0
        at, rss, p99_ms = time.monotonic() - start, _rss_mb(pid), 1000 * (p99 or 0.0)
        rows.append((at, rss, lag, p99_ms, events))
        print(f"{at:5.0f} s  RSS {rss:6.1f} MB  lag {lag:7,.0f}  p99 {p99_ms:6.1f} ms", flush=True)
        before = now


async def _run(
    settings: Settings, pid: int, url: str, args: argparse.Namespace
) -> tuple[int, list[tuple[float, ...]]]:
    seconds = 60 * args.minutes
    rows: list[tuple[float, ...]] = []
    until = time.monotonic() + seconds + args.every
    sent, _ = await asyncio.gather(
        _produce(settings, args.rate, seconds), _sample(pid, url, args.every, until, rows)
    )
    return sent, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=1_000.0)
    parser.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--csv", type=Path, help="write the samples here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="intentstream-soak-") as tmp:
        workdir = Path(tmp)
        with fresh_kafka(workdir) as bootstrap:
            settings = run_settings(bootstrap, "soak", workdir)
            with ready_worker(settings, workdir / "worker.log") as (worker, url):
                sent, rows = asyncio.run(_run(settings, worker.pid, url, args))
                alive = worker.poll() is None
    if args.csv:
        args.csv.write_text(
            "seconds,rss_mb,lag,p99_ms,events\n"
            + "".join(",".join(f"{v:.1f}" for v in r) + "\n" for r in rows)
        )
    quarter = max(1, len(rows) // 4)
    second, last = rows[quarter : 2 * quarter], rows[-quarter:]
    rss_second = sum(r[1] for r in second) / len(second)
    rss_last = sum(r[1] for r in last) / len(last)
    hours = (last[-1][0] - second[0][0]) / 3600
    growth = (rss_last - rss_second) / max(hours, 1e-9)
    print(f"\nsent {sent:,} events in {args.minutes:g} min at {args.rate:,.0f}/s; alive: {alive}")
    print(f"RSS: 2nd quarter {rss_second:.1f} MB, last {rss_last:.1f} MB ({growth:+.1f} MB/h)")
    lags, p99s = [r[2] for r in rows], [r[3] for r in rows]
    print(f"lag: max {max(lags):,.0f}, last {lags[-1]:,.0f}; interval p99: max {max(p99s):.1f} ms")


if __name__ == "__main__":
    main()
