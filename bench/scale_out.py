"""1 vs 2 workers on 8 partitions, on Apache Kafka: how far scale-out goes on this machine.

The same N preloaded RetailRocket events (fresh user ids beyond the sample) are
processed by one ``intentstream worker``, then by two workers sharing a consumer
group (each takes 4 of the 8 partitions), each run with its own group and
outputs. Throughput = events / (last output - first output), as in
``bench/e2e_throughput.py``. On a machine with C cores a worker is one Python
process (one core at most), so two workers can at best double it when C >= 2
plus what Kafka needs; partitions cap the workers that get work at all.

Run: ``.venv/bin/python bench/scale_out.py [--events 100000]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import uuid
from pathlib import Path

from e2e_throughput import _events, _output_span, _settings
from kafka_run import fresh_kafka

from streams.kafka.admin import ensure_topics
from streams.kafka.produce import produce_records
from streams.kafka.security import client_security
from streams.worker.process import wait_until_ready, worker_process

PARTITIONS = 8
DATA = Path("../shared/data/retailrocket-sample/events.csv.gz")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    n = args.events
    rows = []
    with tempfile.TemporaryDirectory(prefix="intentstream-scale-") as tmp:
        workdir = Path(tmp)
        with fresh_kafka(workdir) as bootstrap:
            run = uuid.uuid4().hex[:8]
            base = _settings("kafka", bootstrap, run, "one", partitions=PARTITIONS)
            ensure_topics(base)
            asyncio.run(
                produce_records(
                    bootstrap,
                    base.events_topic,
                    _events(n, DATA),
                    linger_ms=5,
                    max_batch_size=512 * 1024,
                    **client_security(base),
                )
            )
            for workers in (1, 2):
                settings = _settings("kafka", bootstrap, run, f"w{workers}", partitions=PARTITIONS)
                ensure_topics(settings)
                with contextlib.ExitStack() as running:
                    processes = []
                    for index in range(workers):
                        ready = workdir / f"w{workers}-{index}.ready"
                        one = settings.model_copy(update={"ready_file": ready})
                        log_file = workdir / f"w{workers}-{index}.log"
                        processes.append(
                            running.enter_context(worker_process(one, log_file=log_file))
                        )
                        wait_until_ready(processes[-1], ready)
                    count, span = asyncio.run(
                        _output_span(settings, n, timeout=1200, worker=processes[0])
                    )
                rows.append((workers, count, span))
    print("| workers | partitions | events | seconds | events/s | vs 1 worker |")
    print("|---|---|---|---|---|---|")
    single = rows[0][1] / rows[0][2]
    for workers, count, span in rows:
        rate = count / span
        row = f"| {workers} | {PARTITIONS} | {count:,} | {span:.2f} | {rate:,.0f}"
        print(f"{row} | {rate / single:.2f}x |")


if __name__ == "__main__":
    main()
