"""``intentstream learn``: the learner process, learning from the stream while workers serve.

Run ``intentstream learn`` once the model store has a current version. It reads
``shop.events`` in its own consumer group (``<app id>-learn``), so it sees every
event without taking partitions from the workers, and publishes a model version
whenever :class:`~streams.learner.learner.Learner` says one is due. It follows
``shop.privacy.requests`` from its beginning outside any group, and reads it to
its end before it learns a single event: a restarted learner that reads events
again knows every erasure first.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time

from aiokafka import AIOKafkaConsumer

from online_learning.errors import OnlineLearningError
from streams.errors import BrokerError
from streams.kafka.announce import signer_of
from streams.kafka.consumed import input_records
from streams.kafka.feed import follow
from streams.kafka.security import client_security
from streams.learner.learner import Learner
from streams.metrics.common import serve
from streams.metrics.learner import LearnerMetrics
from streams.pipeline.pseudonyms import Pseudonymizer
from streams.pipeline.records import InputRecord
from streams.settings import Settings

log = logging.getLogger(__name__)


async def run_learner(
    settings: Settings, learner: Learner, *, stop: asyncio.Event, metrics: LearnerMetrics
) -> None:
    """Consume, learn and publish until ``stop`` is set.

    Raises:
        BrokerError: the erasure requests can no longer be followed (learning on
            without them could learn from erased users).
    """
    requests: list[InputRecord] = []
    loaded = asyncio.Event()

    async def queue(records: list[InputRecord]) -> None:
        if loaded.is_set():  # learning runs in a thread now: apply them between its batches
            requests.extend(records)
        else:  # nothing learns before the requests are read to their end
            learner.forget(records)

    follower = asyncio.create_task(
        follow(settings, settings.privacy_requests_topic, apply=queue, loaded=loaded)
    )
    try:
        await _caught_up(loaded, follower, stop)
        await _learn(settings, learner, requests, follower, stop=stop, metrics=metrics)
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)


async def _learn(
    settings: Settings,
    learner: Learner,
    requests: list[InputRecord],
    follower: asyncio.Task[None],
    *,
    stop: asyncio.Event,
    metrics: LearnerMetrics,
) -> None:
    """The loop: the erasures read so far, then the events polled, then maybe a publish."""
    consumer = AIOKafkaConsumer(
        settings.events_topic,
        bootstrap_servers=settings.bootstrap,
        group_id=f"{settings.app_id}-learn",
        enable_auto_commit=True,
        auto_offset_reset="earliest",
        **client_security(settings),
    )
    await consumer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=500, max_records=2_000)
            if follower.done():
                raise BrokerError("stopped following the erasure requests") from _failure(follower)
            # Taken after the poll: every request read by now applies before these events.
            erasures = requests[:]
            requests.clear()
            events = input_records(batches.values())
            started = time.perf_counter()
            if erasures:
                await asyncio.to_thread(learner.forget, erasures)
            if events:
                await asyncio.to_thread(learner.learn, events)
            if learner.due():
                try:
                    await asyncio.to_thread(learner.publish)
                except (OnlineLearningError, BrokerError) as exc:
                    log.error("publishing failed, will retry: %s", exc)
            metrics.record(learner.stats(), busy_seconds=time.perf_counter() - started)
    finally:
        await consumer.stop()


async def _caught_up(
    loaded: asyncio.Event, follower: asyncio.Task[None], stop: asyncio.Event
) -> None:
    """Wait until the erasure requests were read to their end, or ``stop``.

    Raises:
        BrokerError: the follower stopped first.
    """
    waits = {asyncio.create_task(loaded.wait()), asyncio.create_task(stop.wait())}
    try:
        await asyncio.wait({*waits, follower}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
    if follower.done():
        raise BrokerError("could not read the erasure requests") from _failure(follower)


def _failure(task: asyncio.Task[None]) -> BaseException | None:
    return None if task.cancelled() else task.exception()


def learn_forever(settings: Settings, *, pseudonymizer: Pseudonymizer) -> None:
    """Run the learner in the foreground until SIGINT or SIGTERM."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        signer_of(settings)  # no master key to sign versions with: fail now, not at a publish
        learner = Learner(settings, pseudonymizer=pseudonymizer)
        metrics = LearnerMetrics()
        serve(metrics.registry, settings.learn_metrics_port, host=settings.metrics_host)
        log.warning(
            "learning from %s, starting at model %s", settings.events_topic, learner.version
        )
        await run_learner(settings, learner, stop=stop, metrics=metrics)

    asyncio.run(main())
