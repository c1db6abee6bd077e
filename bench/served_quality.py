"""Quality where shops get it: test sessions through a real worker on Apache Kafka.

Replays the test sessions event by event (``streams/ops/session_replay.py``: each
session a shopper, a case answered by the list served after its prefix's last
event) into a fresh local Apache Kafka, through a real ``intentstream worker``, and
computes P@20 / MRR@20 from what arrives on the recommendations topic. Beside it,
in the same run, the offline number of the same ranker:

* ``--checkpoint RUN``: the worker serves the run's ranker; offline is
  ``intentstream evaluate``'s "served ranker" row (in float32, over the same
  candidates; with ``--full-ranking`` both rank every item).
* ``--baseline``: the stream baseline, DP releases on and off, after the training
  sessions' events; offline is the same events through the worker's pipeline in
  process (``intentstream evaluate --stream-baseline``).

Run: ``.venv/bin/python bench/served_quality.py --checkpoint runs/diginetica --baseline``
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer
from kafka_run import fresh_kafka, ready_worker, run_settings

from model.checkpoint import load_checkpoint
from model.evaluation.evaluate import CheckpointRanker, evaluate, load_protocol
from streams.kafka.produce import produce_records
from streams.ops.session_replay import (
    Event,
    ReplayPlan,
    replay_in_process,
    replay_plan,
    without_dp,
)
from streams.settings import Settings

DATA = Path("../shared/data/diginetica")
#: Seconds without a new recommendation after which the worker is taken to be done.
IDLE_SECONDS = 60.0


async def _served(
    settings: Settings, expected: int, worker: subprocess.Popen[bytes]
) -> dict[str, list[str]]:
    """Items of every recommendation on the topic, by event id, until ``expected`` came."""
    consumer = AIOKafkaConsumer(
        settings.recommendations_topic,
        bootstrap_servers=settings.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 << 20,
    )
    await consumer.start()
    served: dict[str, list[str]] = {}
    last = time.monotonic()
    try:
        while len(served) < expected and time.monotonic() - last < IDLE_SECONDS:
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited with code {worker.returncode}")
            batches = await consumer.getmany(timeout_ms=500, max_records=20_000)
            for messages in batches.values():
                for message in messages:
                    body = orjson.loads(message.value or b"{}")
                    served[body["event_id"]] = [item["item_id"] for item in body["items"]]
                    last = time.monotonic()
    finally:
        await consumer.stop()
    return served


def through_kafka(
    bootstrap: str, name: str, workdir: Path, events: Sequence[Event], **settings: object
) -> tuple[dict[str, list[str]], float]:
    """Serve ``events`` by a fresh worker on their own topics; the lists and seconds taken."""
    configured = run_settings(bootstrap, name, workdir, **settings)
    records = [(event["user_id"].encode(), orjson.dumps(event)) for event in events]
    with ready_worker(configured, workdir / f"{name}.log") as (worker, _):
        started = time.monotonic()
        asyncio.run(
            produce_records(
                bootstrap,
                configured.events_topic,
                records,
                linger_ms=5,
                max_batch_size=512 * 1024,
            )
        )
        served = asyncio.run(_served(configured, len(records), worker))
    return served, time.monotonic() - started


def _row(name: str, offline: dict[str, float], served: dict[str, float], seconds: float) -> str:
    cells = [
        name,
        f"{offline['P@20']:.2f}",
        f"{served['P@20']:.2f}",
        f"{served['P@20'] - offline['P@20']:+.2f}",
        f"{offline['MRR@20']:.2f}",
        f"{served['MRR@20']:.2f}",
        f"{served['MRR@20'] - offline['MRR@20']:+.2f}",
        f"{int(served['missing'])}",
        f"{seconds:.0f}",
    ]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--checkpoint", type=Path, help="a run or checkpoint folder to serve")
    parser.add_argument(
        "--baseline", action="store_true", help="the stream baseline, DP releases on and off"
    )
    parser.add_argument(
        "--full-ranking", action="store_true", help="the worker and offline rank every item"
    )
    args = parser.parse_args()
    if args.checkpoint is None and not args.baseline:
        parser.error("give --checkpoint RUN, --baseline, or both")
    rows = []
    with tempfile.TemporaryDirectory(prefix="served-quality-") as tmp:
        workdir = Path(tmp)
        with fresh_kafka(workdir) as bootstrap:
            if args.checkpoint is not None:
                plan = replay_plan(args.data, warmup=False)
                protocol = load_protocol(args.data)
                ranker = CheckpointRanker(
                    load_checkpoint(args.checkpoint), protocol.vocab, full_ranking=args.full_ranking
                )
                offline = evaluate(ranker, protocol.cases, protocol.vocab, progress=True)
                served, seconds = through_kafka(
                    bootstrap,
                    "ranker",
                    workdir,
                    plan.events,
                    model_path=args.checkpoint,
                    full_ranking=args.full_ranking,
                )
                rows.append(_row("served ranker", offline, plan.quality(served), seconds))
            if args.baseline:
                plan = replay_plan(args.data, warmup=True)
                for dp in (True, False):
                    rows.append(_baseline_row(bootstrap, workdir, plan, dp=dp))
    print(
        "| ranker | offline P@20 | served P@20 | diff | offline MRR@20 | served MRR@20 | diff "
        "| missing | served s |\n|---|---|---|---|---|---|---|---|---|"
    )
    print("\n".join(rows))


def _baseline_row(bootstrap: str, workdir: Path, plan: ReplayPlan, *, dp: bool) -> str:
    """The stream baseline in process and through Kafka, with or without DP releases."""
    events = plan.warmup + plan.events
    base = Settings(pseudonym_key="k" * 32, master_key="ab" * 32)
    configured = base if dp else without_dp(base)
    offline = plan.quality(replay_in_process(configured, events, progress=True))
    epsilons = {
        key: getattr(configured, key)
        for key in ("privacy_epsilon_per_window", "shared_counts_epsilon")
    }
    name = f"baseline-dp-{'on' if dp else 'off'}"
    served, seconds = through_kafka(bootstrap, name, workdir, events, **epsilons)
    label = f"stream baseline, DP releases {'on' if dp else 'off'}"
    return _row(label, offline, plan.quality(served), seconds)


if __name__ == "__main__":
    main()
