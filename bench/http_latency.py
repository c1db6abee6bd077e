"""Latency of the workers' HTTP API under load, on Apache Kafka.

Two ``intentstream worker`` processes (the stream baseline, no text search: the
demo's configuration) share a 4-partition events topic on a local Apache Kafka
while RetailRocket events are replayed to them at ``--events-rate`` (2,000/s) from
a separate process. After a warm-up replay, ``GET /v1/users/{id}/recommendations``
and then ``POST /v1/search`` are offered at each ``--rates`` for ``--seconds``,
open loop (each request starts at its scheduled time, whatever came back; latency
is from that time, so queueing counts), sent half to each worker: about half the
requests are forwarded to the other worker, as a load balancer in front of both
would make them. Beside the latencies: the CPU the two workers and the client used
over each row, in cores. Users are drawn from those replayed in the warm-up, so their
lists exist. Prints a markdown table; ``--hot-path`` instead measures what the
API adds to the worker's per-event path (building a recommendation with its
body kept, and the latest lists' update).

``--request-cost`` measures the CPU one GET costs the server and a client in one
process, without Kafka.

Run: ``.venv/bin/python bench/http_latency.py [--rates 200 1000] [--seconds 15]
[--bootstrap HOST:PORT]``, ``... --hot-path`` or ``... --request-cost``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import random
import tempfile
import time
import timeit
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import aiohttp
import numpy as np
import orjson
from e2e_throughput import cpu_seconds
from kafka_run import fresh_kafka, run_settings

from model.serving.ranker import Ranked
from streams.http.latest import LatestLists
from streams.ops.event_log import read_events
from streams.ops.replay import replay
from streams.pipeline.answers import Answers, with_user_id
from streams.pipeline.records import OutputRecord
from streams.settings import Settings
from streams.worker.process import read_ready, wait_until_ready, worker_process

DATA = Path(__file__).resolve().parents[1].parent / "shared/data/retailrocket-sample/events.csv.gz"
TOKEN = "bench-http-token-0123456789"
WORKERS = 2
PARTITIONS = 4


def _events_file(path: Path, count: int, rate: float) -> list[str]:
    """``count`` RetailRocket events stamped at ``rate``/s from now, fresh user ids; the users."""
    base = list(read_events(DATA))
    start = time.time()
    users: dict[str, None] = {}
    with open(path, "wb") as out:
        for n in range(count):
            event = dict(base[n % len(base)])
            event["user_id"] = f"{event['user_id']}-r{n // len(base)}"
            event["event_id"] = f"h-{n}"
            event["ts"] = round(start + n / rate, 3)
            users[event["user_id"]] = None
            out.write(orjson.dumps(event) + b"\n")
    return list(users)


def _replay(settings: Settings, path: Path, rate: float) -> None:
    asyncio.run(replay(settings, path, rate=rate, progress=False))


async def _offer(
    bases: list[str], users: list[str], *, rate: int, seconds: float, search: bool
) -> tuple[list[float], Counter[int]]:
    """Open-loop requests at ``rate``/s for ``seconds``: latencies (ms) and status counts."""
    rng = random.Random(rate)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    # A bounded pool of kept-alive connections, as a load balancer keeps.
    connector = aiohttp.TCPConnector(limit_per_host=64)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def one(n: int, due: float) -> None:
            user = rng.choice(users)
            base = bases[n % len(bases)]
            if search:
                body = {"user_id": user, "query": "running shoes", "k": 10}
                request = session.post(f"{base}/v1/search", json=body)
            else:
                request = session.get(f"{base}/v1/users/{quote(user, safe='')}/recommendations")
            async with request as response:
                await response.read()
                statuses[response.status] += 1
            latencies.append((time.perf_counter() - due) * 1000.0)

        start = time.perf_counter() + 0.1
        tasks = []
        for n in range(int(rate * seconds)):
            due = start + n / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(n, due)))
        await asyncio.gather(*tasks)
    return latencies, statuses


@contextlib.contextmanager
def _workers(settings: Settings, workdir: Path) -> Iterator[tuple[list[str], list[int]]]:
    """Ready workers: their API's base URLs and their pids."""
    with contextlib.ExitStack() as running:
        bases, pids = [], []
        for n in range(WORKERS):
            ready = workdir / f"worker-{n}.ready"
            process = running.enter_context(
                worker_process(
                    settings.model_copy(update={"ready_file": ready}),
                    log_file=workdir / f"worker-{n}.log",
                )
            )
            wait_until_ready(process, ready)
            bases.append(f"http://127.0.0.1:{read_ready(ready)['http_port']}")
            pids.append(process.pid)
        yield bases, pids


def _wait_ready(bases: list[str]) -> None:
    async def ready() -> bool:
        async with aiohttp.ClientSession() as session:
            for base in bases:
                async with session.get(f"{base}/readyz") as response:
                    if response.status != 200:
                        return False
        return True

    deadline = time.monotonic() + 60
    while not asyncio.run(ready()):
        if time.monotonic() > deadline:
            raise RuntimeError("the workers did not get ready")
        time.sleep(0.5)


def measure(bootstrap: str, args: argparse.Namespace, workdir: Path) -> list[tuple[str, ...]]:
    settings = run_settings(
        bootstrap,
        "http",
        workdir,
        partitions=PARTITIONS,
        text_search=False,
        http_token=TOKEN,
        # The limits are per client: the benchmark is one client offering the whole load.
        http_rate_per_second=1_000_000.0,
        http_rate_burst=1_000_000,
    )
    phases = [(kind, rate) for kind in ("recommendations", "search") for rate in args.rates]
    # Room for phases that overrun: an overloaded one drains its queue after its window.
    replay_seconds = args.warm_up + len(phases) * args.seconds * 5
    count = int(args.events_rate * replay_seconds)
    path = workdir / "events.jsonl"
    users = _events_file(path, count, args.events_rate)
    # Users of the warm-up's first quarter: answered before the first request, whatever the lag.
    warm = users[: int(args.events_rate * args.warm_up * 0.25)]
    rows = []
    with _workers(settings, workdir) as (bases, pids):
        _wait_ready(bases)
        feeder = multiprocessing.Process(
            target=_replay, args=(settings, path, args.events_rate), daemon=True
        )
        feeder.start()
        time.sleep(args.warm_up)  # the warm-up replay: its users have lists when asked
        for kind, rate in phases:
            if not feeder.is_alive():
                raise RuntimeError("the replay ended before the measurements")
            started = time.perf_counter()
            cpu = sum(cpu_seconds(pid) for pid in pids), time.process_time()
            latencies, statuses = asyncio.run(
                _offer(bases, warm, rate=rate, seconds=args.seconds, search=kind == "search")
            )
            took = time.perf_counter() - started
            workers = (sum(cpu_seconds(pid) for pid in pids) - cpu[0]) / took
            client = (time.process_time() - cpu[1]) / took
            p50, p99 = np.percentile(latencies, [50, 99])
            # Answers over the time they took: the rate held, or under overload the capacity.
            achieved = len(latencies) / max(args.seconds, took)
            codes = ", ".join(f"{code}: {n:,}" for code, n in sorted(statuses.items()))
            print(f"{kind} at {rate}/s: p50 {p50:.1f} ms, p99 {p99:.1f} ms ({codes})", flush=True)
            rows.append(
                (
                    kind,
                    f"{rate:,}",
                    f"{achieved:,.0f}",
                    f"{p50:.1f}",
                    f"{p99:.1f}",
                    f"{workers:.2f}",
                    f"{client:.2f}",
                    codes,
                )
            )
        feeder.terminate()
    return rows


def _recommendation_before(
    event: dict[str, str], answer: Ranked, *, purchase_intent: float, now: float, latency_s: float
) -> bytes:
    """The recommendation record as ``Answers.recommendation`` built it before the API."""
    value = {
        "user_id": event["user_id"],
        "event_id": event["event_id"],
        "ts": round(now, 6),
        "context": answer.context,
        "items": [{"item_id": item, "score": score} for item, score in answer.items],
        "purchase_intent": purchase_intent,
        "model_version": answer.model_version,
        "latency_ms": round(latency_s * 1000.0, 3),
    }
    record = OutputRecord(topic="recs", key=event["user_id"].encode(), value=orjson.dumps(value))
    return record.value or b""


def hot_path() -> None:
    """What the API adds per event to the worker's batch path, in microseconds."""
    answer = Ranked([(f"i{n}", 0.123456) for n in range(20)], "browse", "baseline-cooc-1")
    event = {"user_id": "u123456", "event_id": "3f0c9a4e-7d1b-4c55-9a51-2b8f1e6d0c42"}
    answers = Answers(
        recommendations_topic="recs",
        audit_topic="audit",
        dlq_topic="dlq",
        seal=lambda key, value: b"",
        clock=time.time,
    )

    def whole() -> bytes:
        return _recommendation_before(event, answer, purchase_intent=0.1, now=1.7e9, latency_s=1e-3)

    def body_kept() -> bytes:
        record, _ = answers.recommendation(
            event, answer, purchase_intent=0.1, now=1.7e9, latency_s=1e-3
        )
        return record.value or b""

    assert whole() == body_kept()
    lists = LatestLists(100_000)
    changes = {f"{k:032x}".encode(): (k % 8, whole()[20:]) for k in range(2_000)}

    def per_event(fn: object, number: int) -> float:
        return min(timeit.repeat(fn, number=number, repeat=9)) / number * 1e6  # type: ignore[arg-type]

    before, after = per_event(whole, 20_000), per_event(body_kept, 20_000)
    update = per_event(lambda: lists.update(changes), 50) / len(changes)
    print("| step | µs per event |\n|---|---|")
    print(f"| recommendation record, before (one `orjson.dumps`) | {before:.2f} |")
    print(f"| recommendation record and kept body, after | {after:.2f} |")
    print(f"| latest lists' update (2,000 users a batch) | {update:.2f} |")
    print(f"| added in all | {after - before + update:.2f} |")
    print(f"\nkept body: {len(changes[b'0' * 32][1])} bytes at 20 items")


async def _request_cost(requests: int) -> None:
    """CPU per GET of one API in this process (server and client), over one kept-alive link."""
    from prometheus_client import CollectorRegistry

    from streams.http.auth import BearerToken
    from streams.http.proxy import Forwarder
    from streams.http.routing import Routes
    from streams.http.server import ApiLimits, build_application
    from streams.http.service import ApiService, bind
    from streams.metrics.http import HttpMetrics

    body = orjson.dumps(
        {"event_id": "e", "items": [{"item_id": f"i{n}", "score": 0.1} for n in range(20)]}
    )

    class Lone:
        def readiness(self) -> dict[str, object]:
            return {"ready": True}

        def ready(self) -> bool:
            return True

        def routes(self) -> Routes:
            return Routes(owners={0: "self"}, own_url="self")

        def latest(self, user_id: str) -> bytes:
            return with_user_id(user_id, body)

        def search(self, user_id: str, query: str, k: int) -> bytes:
            raise NotImplementedError

    forwarder = Forwarder()
    app = build_application(
        Lone(),
        token=BearerToken(TOKEN),
        limits=ApiLimits(rate_per_second=1e9, burst=10**9, max_body_bytes=1024, top_k=20),
        metrics=HttpMetrics(CollectorRegistry()),
        forwarder=forwarder,
    )
    sock = bind("127.0.0.1", 0)
    service = ApiService(app, sock=sock, forwarder=forwarder)
    await service.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1/users/u1/recommendations"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        async with aiohttp.ClientSession(headers=headers) as session:
            for n in range(200 + requests):
                if n == 200:
                    cpu = time.process_time()
                async with session.get(url) as response:
                    await response.read()
            per = (time.process_time() - cpu) / requests * 1e6
    finally:
        await service.stop()
    print(f"{per:.0f} µs of CPU per GET, server and client together ({requests:,} requests)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=int, nargs="+", default=[200, 1_000])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--events-rate", type=float, default=2_000.0)
    parser.add_argument("--warm-up", type=float, default=10.0)
    parser.add_argument("--bootstrap", help="an Apache Kafka to use instead of a fresh one")
    parser.add_argument("--hot-path", action="store_true", help="the per-event cost only")
    parser.add_argument("--request-cost", action="store_true", help="CPU per GET, in process")
    args = parser.parse_args()
    if args.hot_path:
        hot_path()
        return
    if args.request_cost:
        asyncio.run(_request_cost(5_000))
        return
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if args.bootstrap:
            rows = measure(args.bootstrap, args, workdir)
        else:
            with fresh_kafka(workdir) as bootstrap:
                rows = measure(bootstrap, args, workdir)
    print(
        f"\n{WORKERS} workers, {PARTITIONS} partitions, {args.events_rate:,.0f} events/s "
        f"replayed, {args.seconds:.0f} s per row\n"
    )
    print(
        "| request | offered /s | answered /s | p50 ms | p99 ms | workers' CPU (cores) "
        "| client's CPU (cores) | statuses |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
