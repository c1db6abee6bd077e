"""``intentstream learn``: the learner process, learning from the stream while workers serve.

Run ``intentstream learn`` once the model store has a current version. It reads
``shop.events`` in its own consumer group (``<app id>-learn``), so it sees every
event without taking partitions from the workers, and publishes a model version
whenever :class:`~streams.learner.learner.Learner` says one is due.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time

from aiokafka import AIOKafkaConsumer

from online_learning.errors import OnlineLearningError
from streams.errors import BrokerError
from streams.learner.learner import Learner
from streams.metrics.common import serve
from streams.metrics.learner import LearnerMetrics
from streams.pipeline.pseudonyms import Pseudonymizer
from streams.settings import Settings

log = logging.getLogger(__name__)


async def run_learner(
    settings: Settings, learner: Learner, *, stop: asyncio.Event, metrics: LearnerMetrics
) -> None:
    """Consume, learn and publish until ``stop`` is set."""
    consumer = AIOKafkaConsumer(
        settings.events_topic,
        bootstrap_servers=settings.bootstrap,
        group_id=f"{settings.app_id}-learn",
        enable_auto_commit=True,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=500, max_records=2_000)
            values = [m.value for messages in batches.values() for m in messages]
            started = time.perf_counter()
            if values:
                await asyncio.to_thread(learner.learn, values)
            if learner.due():
                try:
                    await asyncio.to_thread(learner.publish)
                except (OnlineLearningError, BrokerError) as exc:
                    log.error("publishing failed, will retry: %s", exc)
            metrics.record(learner.stats(), busy_seconds=time.perf_counter() - started)
    finally:
        await consumer.stop()


def learn_forever(settings: Settings, *, pseudonymizer: Pseudonymizer) -> None:
    """Run the learner in the foreground until SIGINT or SIGTERM."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        learner = Learner(settings, pseudonymizer=pseudonymizer)
        metrics = LearnerMetrics()
        serve(metrics.registry, settings.learn_metrics_port)
        log.warning(
            "learning from %s, starting at model %s", settings.events_topic, learner.version
        )
        await run_learner(settings, learner, stop=stop, metrics=metrics)

    asyncio.run(main())
