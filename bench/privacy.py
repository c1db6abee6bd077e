"""What privacy costs: pipeline throughput with it on and off, and erasure latency.

1. **Throughput, same run, same events** (RetailRocket, repeated with fresh user
   ids): the pure per-batch pipeline (``streams.pipeline.batch.EventPipeline``) in
   batches of 2,000, with privacy on (HMAC pseudonyms, AES-GCM sealed state with
   per-user keys, DP budget and bounded contributions, threshold releases) and
   with each part swapped for a pass-through (``off``), so the difference is
   what privacy costs the hot path.
2. **Erasure latency** on a local Apache Kafka with a real worker that holds
   state for every user: erasure requests are produced one by one (5 per
   second); the latency is request sent -> its audit record received.

Run: ``.venv/bin/python bench/privacy.py --events 100000 --erasures 50``
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import timeit
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from model.threshold import ThresholdCounts
from streams.brokers import local_broker
from streams.kafka.admin import ensure_topics
from streams.kafka.produce import produce_records
from streams.kafka.security import client_security
from streams.ops.event_log import read_events
from streams.pipeline.batch import EventPipeline
from streams.pipeline.build import build_pipeline
from streams.pipeline.crypto import WRAPPED_KEY_BYTES, StateCipher
from streams.pipeline.dp import PrivacyBudget
from streams.pipeline.ledger import LedgerSealer, UserLedger
from streams.pipeline.pseudonyms import Pseudonymizer
from streams.pipeline.records import InputRecord
from streams.pipeline.state import UserState
from streams.settings import DEFAULT_HOME, Settings
from streams.worker.process import worker_process

DATA = Path("../shared/data/retailrocket-sample/events.csv.gz")
KEY = "bench-pseudonym-key-0123456789abcdef"
MASTER = bytes(range(32))
BATCH = 2_000


class PlaintextCipher(StateCipher):
    """Privacy off: state stored as is (same interface as the AES-GCM cipher)."""

    def new_wrapped_key(self, pseudonym: bytes) -> bytes:
        return bytes(WRAPPED_KEY_BYTES)

    def seal(self, pseudonym: bytes, wrapped_key: bytes, plaintext: bytes) -> bytes:
        return plaintext

    def open(self, pseudonym: bytes, wrapped_key: bytes, sealed: bytes) -> bytes:
        return sealed


class IdentityPseudonyms(Pseudonymizer):
    """Privacy off: the raw id is the key."""

    def many(self, user_ids: Any) -> list[str]:
        return list(user_ids)

    def one(self, user_id: str) -> str:
        return user_id

    def sessions(self, session_ids: Any) -> list[str]:
        return list(session_ids)


class RawSharedCounts:
    """Privacy off: the baseline learns every event's counts at once, no budget, no noise."""

    def __init__(self, pipeline: EventPipeline) -> None:
        self._recommender, self._intent = pipeline.ranker.fallback, pipeline.intent.rate
        self.new_marks: dict[int, float] = {}
        self.charged_units = self.refused = self.released_windows = 0

    def restore(self, state: UserState, ledger: Any, now: float) -> None:
        return None

    def note_released(self, marks: dict[int, float]) -> None:
        return None

    def contribute(
        self,
        state: UserState,
        *,
        item: str | None,
        previous_item: str | None,
        previous_cell: str | None,
        current_type: int,
        now: float,
        partition: int,
    ) -> None:
        if item is not None:
            history = [previous_item] if previous_item is not None else []
            self._recommender.learn_one(history, item)
        if previous_cell is not None:
            self._intent.learn_one(int(previous_cell.split(".")[0]), current_type)

    def due(self, now: float) -> bool:
        return False

    def advance(self, now: float) -> int:
        return 0


def _records(n: int) -> list[InputRecord]:
    base = list(read_events(DATA))
    records = []
    for i in range(n):
        event = dict(base[i % len(base)])
        event["user_id"] = f"{event['user_id']}-r{i // len(base)}"
        value = orjson.dumps(event)
        key = event["user_id"].encode()
        records.append(InputRecord(key, value, "shop.events", i % 8, i // 8, time.time()))
    return records


def _pipeline(*, private: bool) -> EventPipeline:
    settings = Settings(pseudonym_key=KEY, text_search=False)
    if private:
        return build_pipeline(
            settings, pseudonymizer=Pseudonymizer(KEY.encode()), master_key=MASTER
        )
    pipeline = build_pipeline(
        settings,
        pseudonymizer=IdentityPseudonyms(KEY.encode()),
        master_key=MASTER,
        cipher=PlaintextCipher(MASTER),
    )
    pipeline.shared = RawSharedCounts(pipeline)  # type: ignore[assignment]
    return pipeline


def throughput(records: list[InputRecord], *, private: bool) -> float:
    """Events/s of the pipeline over ``records`` in agent-sized batches, tables in dicts."""
    pipeline = _pipeline(private=private)
    states: dict[bytes, bytes] = {}
    keys: dict[bytes, bytes] = {}
    started = time.perf_counter()
    for start in range(0, len(records), BATCH):
        result = pipeline.process(
            records[start : start + BATCH], read_state=states.get, read_key=keys.get
        )
        result.changes.apply(states, keys)
    return len(records) / (time.perf_counter() - started)


async def _erasure_latencies(settings: Settings, users: list[str], rate: float) -> list[float]:
    consumer = AIOKafkaConsumer(
        settings.privacy_audit_topic,
        bootstrap_servers=settings.bootstrap,
        auto_offset_reset="earliest",  # the topic is this run's own; keys are unique
        enable_auto_commit=False,
        **client_security(settings),
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap, linger_ms=0, **client_security(settings)
    )
    await consumer.start()
    await producer.start()
    latencies = []
    try:
        for n, user in enumerate(users):
            request = orjson.dumps({"action": "erase", "request_id": f"bench-{n}"})
            sent = time.perf_counter()
            await producer.send_and_wait(
                settings.privacy_requests_topic, request, key=user.encode()
            )
            while True:
                message = await consumer.getone()
                if message.key == f"bench-{n}".encode():
                    break
            latencies.append(1000 * (time.perf_counter() - sent))
            await asyncio.sleep(1 / rate)
    finally:
        await consumer.stop()
        await producer.stop()
    return latencies


def erasure(n_users: int, workdir: Path) -> list[float]:
    """Erasure latencies (ms) on Apache Kafka with a worker that has state for every user."""
    broker = local_broker("kafka", home=workdir, port=19_392, cache=DEFAULT_HOME)
    bootstrap = broker.start()
    try:
        run = uuid.uuid4().hex[:8]
        settings = Settings(
            kafka=bootstrap,
            broker_kind="kafka",
            app_id=f"bench-{run}",
            pseudonym_key=KEY,
            master_key=MASTER.hex(),
            events_topic=f"ev-{run}",
            recommendations_topic=f"rec-{run}",
            privacy_requests_topic=f"req-{run}",
            privacy_audit_topic=f"audit-{run}",
            dlq_topic=f"dlq-{run}",
            text_search=False,
            metrics_port=0,
        )
        ensure_topics(settings)
        users = [f"erase-me-{n}" for n in range(n_users)]
        events = [
            (
                u.encode(),
                orjson.dumps(
                    {
                        "event_id": f"{u}-{k}",
                        "user_id": u,
                        "ts": 1.7e9 + k,
                        "type": "view",
                        "item_id": f"i{k}",
                    }
                ),
            )
            for u in users
            for k in range(3)
        ]
        with worker_process(settings, log_file=workdir / "worker.log"):
            asyncio.run(
                produce_records(
                    bootstrap, settings.events_topic, events, **client_security(settings)
                )
            )
            time.sleep(5)
            return asyncio.run(_erasure_latencies(settings, users, rate=5.0))
    finally:
        broker.stop()


def components() -> dict[str, float]:
    """Microseconds per call of each privacy step on the hot path (best of 5 timeit runs)."""
    cipher, pseudonyms = StateCipher(MASTER), Pseudonymizer(KEY.encode())
    user, state = b"0" * 32, bytes(300)
    wrapped = cipher.new_wrapped_key(user)
    sealed = cipher.seal(user, wrapped, state)
    budget = PrivacyBudget(limit_epsilon=1e9, window_seconds=3600.0)
    ledgers = LedgerSealer(MASTER)
    ledger = UserLedger(wrapped, -1, 3600.0, 1_000_000, 1_700_000_000)
    sealed_ledger = ledgers.seal(user, ledger)
    calls: dict[str, Callable[[], object]] = {
        "HMAC pseudonym of one id": lambda: pseudonyms.one("user-12345"),
        "seal a 300-byte state (key cached)": lambda: cipher.seal(user, wrapped, state),
        "open a 300-byte state (key cached)": lambda: cipher.open(user, wrapped, sealed),
        "new wrapped data key": lambda: cipher.new_wrapped_key(b"1" * 32),
        "budget check and spend": lambda: budget.try_spend(0.001, now=1.0),
        "seal a ledger (a user's first event of a window)": lambda: ledgers.seal(user, ledger),
        "open a ledger (once per user and batch)": lambda: ledgers.open(user, sealed_ledger),
    }
    micros = {
        name: 1e6 * min(timeit.repeat(call, number=2_000, repeat=5)) / 2_000
        for name, call in calls.items()
    }
    micros["200,000 contributions to 1,000 keys, then their OpenDP release"] = (
        1e6 * min(timeit.repeat(_release_1000, number=5, repeat=3)) / 5
    )
    return micros


def _release_1000() -> None:
    counts = ThresholdCounts(max_keys=7)
    for n in range(1_000):
        for _ in range(200):
            counts.add(f"i{n}")
    counts.release(epsilon=1.0, delta=1e-6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--erasures", type=int, default=50)
    args = parser.parse_args()
    print("| privacy step | µs per call |\n|---|---|")
    for name, micros in components().items():
        print(f"| {name} | {micros:.2f} |")
    records = _records(args.events)
    print()
    print("| round | privacy | pipeline events/s |\n|---|---|---|")
    for round_ in (1, 2):  # alternate, so neither side gets a warmer machine
        for name in ("off", "on"):
            rate = throughput(records, private=name == "on")
            print(f"| {round_} | {name} | {rate:,.0f} |", flush=True)
    if args.erasures:
        with tempfile.TemporaryDirectory(prefix="intentstream-bench-") as tmp:
            latencies = erasure(args.erasures, Path(tmp))
        q = statistics.quantiles(latencies, n=100)
        print(
            f"\nerasure latency over {len(latencies)} requests: p50 {q[49]:.1f} ms, "
            f"p95 {q[94]:.1f} ms, max {max(latencies):.1f} ms"
        )


if __name__ == "__main__":
    main()
