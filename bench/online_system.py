"""Online HR@10 over time through the whole system: frozen vs learning vs the stream baseline.

Unlike ``bench/online.py`` (one process, models called directly), this runs the
product: Apache Kafka from the project's script, ``intentstream worker``
processes and the ``intentstream learn`` process, with models published to the
store and hot-swapped from ``shop.models``.

1. A transformer (d = 64, full softmax) is trained on ``yoochoose-100k/train.csv.gz``
   with :func:`model.training.fit.fit` (what ``intentstream train`` runs).
2. Three workers read the same events topic, each in its own consumer group with
   its own outputs:

   * (a) **frozen**: ``INTENTSTREAM_MODEL_PATH`` = that checkpoint, never updated;
   * (b) **incremental**: the checkpoint published as the store's first version;
     ``intentstream learn`` learns from the stream and publishes child versions,
     which this worker swaps to (with probation);
   * (c) **stream baseline**: no transformer: the DP co-occurrence baseline and
     the river intent model, both learned from the differentially private
     per-window releases (docs/privacy.md).
3. The training clicks are replayed first (as fast as possible: the history the
   workers and the learner would have seen), then, once everyone has caught up,
   the test clicks in time order at ``--rate`` events/s.

For every test click with an earlier click in its session, the list the worker
emitted after that earlier click is checked for the clicked item (prequential
HR@10 and NDCG@10), from the recommendations topic of each worker. It also
reports the learner's update throughput (examples per busy second), the swap
latency (a version's announcement to its first recommendation, and the
worker's own announcement-to-serving histogram) and the intent log-loss of the
river model against the purchase rate.

Run: ``.venv/bin/python bench/online_system.py`` (about 8 minutes on the 2-core
machine); ``--plot docs/online_system.png`` writes the figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import statistics
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import orjson
from aiokafka import AIOKafkaConsumer
from kafka import KafkaConsumer, TopicPartition

from model.training.fit import fit
from model.training.train import TrainConfig
from online_learning.prequential import PrequentialRanking
from online_learning.registry import Announcement
from streams.brokers import local_broker
from streams.brokers.probe import free_port
from streams.kafka.admin import admin_client, ensure_topics
from streams.kafka.announce import publish
from streams.kafka.security import client_security
from streams.ops.event_log import read_events
from streams.ops.replay import replay
from streams.ops.status import Scrape, scrape
from streams.settings import DEFAULT_HOME, Settings
from streams.worker.process import read_ready, wait_until_ready, worker_process

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after choosing the file-only backend

DATA = Path("../shared/data/yoochoose-100k")
KEY = "bench-online-system-pseudonym-key"
MASTER_KEY = "22" * 32
K = 10
BLOCK = 1_000
VARIANTS = ("frozen", "incremental", "stream baseline")


@dataclass(frozen=True)
class Emitted:
    """One recommendation as the benchmark reads it back."""

    items: list[str]
    version: str
    ts: float


def _sorted_events(source: Path, target: Path) -> list[dict[str, Any]]:
    """The file's events in time order, written as JSONL for ``replay``."""
    events = sorted(read_events(source), key=lambda e: float(e["ts"]))
    target.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return events


def _settings(bootstrap: str, run: str, workdir: Path) -> dict[str, Settings]:
    common = Settings(
        kafka=bootstrap,
        broker_kind="kafka",
        events_topic=f"events-{run}",
        pseudonym_key=KEY,
        master_key=MASTER_KEY,
        partitions=4,
        text_search=False,
        model_store=workdir / "store",
        learn_publish_seconds=60.0,
        learn_metrics_port=free_port(),
    )
    out = {}
    for variant in VARIANTS:
        name = variant.replace(" ", "-")
        out[variant] = common.model_copy(
            update={
                "app_id": f"bench-{run}-{name}",
                "recommendations_topic": f"recs-{run}-{name}",
                "dlq_topic": f"dlq-{run}-{name}",
                "items_topic": f"items-{run}-{name}",
                "privacy_requests_topic": f"requests-{run}-{name}",
                "privacy_audit_topic": f"audit-{run}-{name}",
                # Only (b) follows the learner's announcements.
                "models_topic": f"models-{run}" if variant == "incremental" else f"m-{run}-{name}",
                "metrics_port": 0,
                "ready_file": workdir / f"{name}.ready",
            }
        )
    return out


@contextlib.contextmanager
def _processes(settings: dict[str, Settings], workdir: Path) -> Iterator[dict[str, int]]:
    """The three workers and the learner; yields each worker's metrics port."""
    with contextlib.ExitStack() as running:
        ports = {}
        for variant, s in settings.items():
            log_file = workdir / f"{variant.replace(' ', '-')}.log"
            process = running.enter_context(worker_process(s, log_file=log_file))
            assert s.ready_file is not None
            wait_until_ready(process, s.ready_file, timeout=300)
            ports[variant] = read_ready(s.ready_file)["metrics_port"]
        learner = settings["incremental"].model_copy(update={"ready_file": None})
        running.enter_context(
            worker_process(learner, log_file=workdir / "learn.log", command="learn")
        )
        yield ports


def _learner_lag(settings: Settings) -> int:
    """Events of the topic the learner's consumer group has not committed yet."""
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap, **client_security(settings))
    try:
        partitions = [
            TopicPartition(settings.events_topic, p)
            for p in consumer.partitions_for_topic(settings.events_topic) or ()
        ]
        ends = consumer.end_offsets(partitions)
        with admin_client(settings) as admin:
            committed = admin.list_consumer_group_offsets(f"{settings.app_id}-learn")
        return sum(
            end - (committed[tp].offset if tp in committed else 0) for tp, end in ends.items()
        )
    finally:
        consumer.close()


async def _recommendations(settings: Settings, want: int, timeout: float) -> dict[str, Emitted]:
    """Read a worker's recommendations (event id -> list) until ``want`` arrived."""
    consumer = AIOKafkaConsumer(
        settings.recommendations_topic,
        bootstrap_servers=settings.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **client_security(settings),
    )
    await consumer.start()
    out: dict[str, Emitted] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(out) < want and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for message in (m for messages in batches.values() for m in messages):
                value = orjson.loads(message.value)
                items = [entry["item_id"] for entry in value["items"][:K]]
                out[value["event_id"]] = Emitted(items, value["model_version"], value["ts"])
    finally:
        await consumer.stop()
    return out


async def _announcements(settings: Settings) -> list[Announcement]:
    consumer = AIOKafkaConsumer(
        settings.models_topic,
        bootstrap_servers=settings.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **client_security(settings),
    )
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=3_000)
        return [Announcement.from_bytes(m.value) for ms in batches.values() for m in ms]
    finally:
        await consumer.stop()


def _wait_until(done: Any, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(2)


def _prequential(
    clicks: list[dict[str, Any]], emitted: dict[str, Emitted]
) -> tuple[list[PrequentialRanking], PrequentialRanking]:
    """HR@10 / NDCG@10 per block of scored test clicks and overall."""
    previous: dict[str, str] = {}
    blocks: list[PrequentialRanking] = []
    overall = PrequentialRanking(k=K)
    for click in clicks:
        earlier = previous.get(click["session_id"])
        previous[click["session_id"]] = click["event_id"]
        if earlier is None:
            continue
        if overall.n % BLOCK == 0:
            blocks.append(PrequentialRanking(k=K))
        shown = emitted[earlier].items if earlier in emitted else None
        overall.update_one(shown or [], click["item_id"])
        blocks[-1].update_one(shown or [], click["item_id"])
    return blocks, overall


def _swap_latencies(
    announcements: list[Announcement], emitted: dict[str, Emitted], first: str
) -> list[float]:
    """Seconds from each learned version's announcement to its first recommendation."""
    first_served: dict[str, float] = {}
    for rec in emitted.values():
        if rec.ts < first_served.get(rec.version, float("inf")):
            first_served[rec.version] = rec.ts
    return [
        first_served[a.version] - a.created_at
        for a in announcements
        if a.version != first and a.version in first_served
    ]


def _plot(blocks: dict[str, list[PrequentialRanking]], path: Path) -> None:
    figure, axes = plt.subplots(figsize=(8, 4))
    for variant, rows in blocks.items():
        x = [BLOCK * (i + 1) for i in range(len(rows))]
        axes.plot(x, [100 * r.snapshot().hr for r in rows], marker="o", label=variant)
    axes.set_xlabel("scored test clicks (time order)")
    axes.set_ylabel(f"online HR@10 per {BLOCK:,} clicks (%)")
    axes.set_title("YOOCHOOSE test clicks through the full system")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)


def _metric(s: Scrape, name: str, **labels: str) -> float:
    value = s.value(name, **labels)
    return float("nan") if value is None else value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15, help="pretraining epochs")
    parser.add_argument("--rate", type=float, default=100.0, help="test clicks per second")
    parser.add_argument(
        "--publish-every", type=int, default=2_000, help="sequences between learned versions"
    )
    parser.add_argument(
        "--plot", type=Path, help="write the HR@10-over-time figure here (.png or .svg)"
    )
    args = parser.parse_args()
    logging.getLogger("kafka").setLevel(logging.ERROR)  # the lag probe has no group, by design
    with tempfile.TemporaryDirectory(prefix="intentstream-online-") as tmp:
        workdir = Path(tmp)
        started = time.perf_counter()
        fit(
            DATA / "train.csv.gz",
            workdir / "run",
            train_config=TrainConfig(
                epochs=args.epochs,
                negatives=0,
                learning_rate=3e-3,
                lr_half_life=0,
                bf16=False,
                seed=0,
            ),
            scorer_options={"d_model": 64},
            progress=False,
        )
        print(f"pretraining: {args.epochs} epochs in {time.perf_counter() - started:.0f} s")
        train = _sorted_events(DATA / "train.csv.gz", workdir / "train.jsonl")
        test = _sorted_events(DATA / "test.csv.gz", workdir / "test.jsonl")
        broker = local_broker(
            "kafka", home=workdir / "kafka", port=free_port(span=2), cache=DEFAULT_HOME
        )
        bootstrap = broker.start()
        try:
            run = uuid.uuid4().hex[:8]
            settings = _settings(bootstrap, run, workdir)
            for s in settings.values():
                ensure_topics(s)
            incremental = settings["incremental"].model_copy(
                update={"learn_publish_every": args.publish_every}
            )
            settings["incremental"] = incremental
            settings["frozen"] = settings["frozen"].model_copy(
                update={"model_path": workdir / "run"}
            )
            first = publish(incremental, workdir / "run", parent=None).version
            with _processes(settings, workdir) as ports:
                asyncio.run(replay(incremental, workdir / "train.jsonl", progress=False))
                for s in settings.values():
                    asyncio.run(_recommendations(s, len(train), timeout=900))
                _wait_until(lambda: _learner_lag(incremental) == 0, "the learner", 900)
                print(f"caught up on {len(train):,} training clicks; replaying the test clicks")
                asyncio.run(
                    replay(incremental, workdir / "test.jsonl", rate=args.rate, progress=False)
                )
                emitted = {
                    variant: asyncio.run(_recommendations(s, len(train) + len(test), 900))
                    for variant, s in settings.items()
                }
                _wait_until(lambda: _learner_lag(incremental) == 0, "the learner", 300)
                worker_metrics = {
                    v: scrape(f"http://127.0.0.1:{port}/metrics") for v, port in ports.items()
                }
                learner = scrape(f"http://127.0.0.1:{incremental.learn_metrics_port}/metrics")
                announcements = asyncio.run(_announcements(incremental))
        finally:
            broker.stop()

    results = {v: _prequential(test, emitted[v]) for v in VARIANTS}
    _report(results, emitted, worker_metrics, learner, announcements, first, len(test))
    if args.plot:
        _plot({v: blocks for v, (blocks, _) in results.items()}, args.plot)
        print(f"\nfigure: {args.plot}")


def _report(
    results: dict[str, tuple[list[PrequentialRanking], PrequentialRanking]],
    emitted: dict[str, dict[str, Emitted]],
    worker_metrics: dict[str, Scrape],
    learner: Scrape,
    announcements: list[Announcement],
    first: str,
    n_test: int,
) -> None:
    overall = {v: results[v][1] for v in VARIANTS}
    print(f"{n_test:,} test clicks, {overall['frozen'].n:,} scored (an earlier click in session)")
    print(f"| scored clicks | {' | '.join(f'HR@10 {v}' for v in VARIANTS)} |")
    print(f"|---|{'---|' * len(VARIANTS)}")
    for index, block in enumerate(results["frozen"][0]):
        cells = " | ".join(f"{100 * results[v][0][index].snapshot().hr:.2f}" for v in VARIANTS)
        first_click = index * BLOCK + 1
        print(f"| {first_click:,}-{first_click - 1 + block.n:,} | {cells} |")
    print(f"| all | {' | '.join(f'**{100 * overall[v].snapshot().hr:.2f}**' for v in VARIANTS)} |")
    ndcg = ", ".join(f"{v} {100 * overall[v].snapshot().ndcg:.2f}" for v in VARIANTS)
    print(f"\nNDCG@10: {ndcg}")
    examples = _metric(learner, "intentstream_learn_examples_total")
    busy = _metric(learner, "intentstream_learn_busy_seconds_total")
    print(
        f"learner: {examples:,.0f} examples, "
        f"{_metric(learner, 'intentstream_learn_updates_total'):,.0f} updates, "
        f"{_metric(learner, 'intentstream_learn_published_total'):,.0f} versions published; "
        f"{examples / busy:,.0f} examples per busy second ({busy:.0f} s busy)"
    )
    latencies = _swap_latencies(announcements, emitted["incremental"], first)
    swaps = worker_metrics["incremental"]
    swap_count = _metric(swaps, "intentstream_model_swap_seconds_count")
    swap_sum = _metric(swaps, "intentstream_model_swap_seconds_sum")
    if latencies:
        print(
            f"swap latency, announcement to first recommendation by the version: "
            f"median {statistics.median(latencies):.2f} s, max {max(latencies):.2f} s "
            f"over {len(latencies)} versions"
        )
    print(
        f"worker (b): {swap_count:.0f} swaps, mean announcement-to-serving "
        f"{swap_sum / max(swap_count, 1):.2f} s; "
        f"{_metric(swaps, 'intentstream_model_swaps_total', outcome='failed_probation'):.0f} "
        "failed probation"
    )
    served = defaultdict(int)
    for rec in emitted["incremental"].values():
        served[rec.version] += 1
    print(f"versions serving worker (b)'s recommendations: {len(served)}")
    baseline = worker_metrics["stream baseline"]
    losses = baseline.labelled("intentstream_intent_log_loss", "model")
    shown = ", ".join(f"{m} {loss:.4f}" for m, loss in sorted(losses.items())) or "none"
    print(f"intent log-loss, last 1,000 events (worker c): {shown}")


if __name__ == "__main__":
    main()
