"""Replay a recorded event log into the events topic.

Used by ``intentstream replay FILE`` to drive the pipeline with real shoppers'
logs (see ``../shared/data/README.md``) as fast as possible, at a fixed rate,
or at the log's own pace sped up.

Files are canonical event CSVs (``ts,user_id,session_id,type,item_id,category,
price,query``) or JSONL whose lines are event objects, either optionally
gzipped. Replay never validates events: the worker does, and dead-letters what
it rejects, so nothing in the file is dropped silently here.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from streams.client.connection import producer_options
from streams.client.partitioner import user_key
from streams.kafka.produce import PartitionBatches, Sent
from streams.ops.event_log import read_events
from streams.settings import Settings

log = logging.getLogger(__name__)

#: Longest real-time sleep for one gap in ``speedup`` mode: logs span days
#: (YOOCHOOSE has overnight gaps), and a demo must not stall for hours.
MAX_GAP_SECONDS = 5.0

#: Sleep only when this far ahead of schedule; smaller leads send at once.
#: 10 ms bursts of 5 events are still smooth at 500 events/s, and one timer
#: per event would cost more than the send itself.
TICK_SECONDS = 0.01

#: Events sent before awaiting their acknowledgements together.
CHUNK_EVENTS = 1_000

#: Await acknowledgements at least this often, so slow rates still report progress.
CHUNK_SECONDS = 0.25


@dataclass(frozen=True)
class Pause:
    """Hold the replay after its first ``after`` events (all acknowledged) until ``until`` is set.

    The pace then goes on from where it stopped: the held time is not caught up in a burst.
    """

    after: int
    until: asyncio.Event


@dataclass(frozen=True)
class ReplayStats:
    """What one replay produced, all of it acknowledged by the broker."""

    sent: int
    seconds: float
    first_ts: float | None
    last_ts: float | None

    @property
    def rate(self) -> float:
        """Events per second of wall time."""
        return self.sent / self.seconds if self.seconds > 0 else 0.0


class Pacer:
    """When each event is due, in seconds after the replay started; no clock, no sleeping.

    ``rate`` spaces events evenly; ``speedup`` follows the gaps between
    consecutive ``ts`` divided by the factor, each capped at ``max_gap``
    (out-of-order or missing stamps add no gap); neither = all due at once.

    Examples:
        >>> pacer = Pacer(rate=500.0)
        >>> [pacer.due(0.0) for _ in range(3)]
        [0.0, 0.002, 0.004]
        >>> pacer = Pacer(speedup=10.0)
        >>> [pacer.due(ts) for ts in (100.0, 101.0, 100.5, 102.0, 1e6)]
        [0.0, 0.1, 0.1, 0.2, 5.2]
    """

    def __init__(
        self,
        *,
        rate: float | None = None,
        speedup: float | None = None,
        max_gap: float = MAX_GAP_SECONDS,
    ) -> None:
        if rate is not None and speedup is not None:
            raise ValueError("give rate or speedup, not both")
        for name, value in (("rate", rate), ("speedup", speedup), ("max_gap", max_gap)):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value}")
        self._rate = rate
        self._speedup = speedup
        self._max_gap = max_gap
        self._count = 0
        self._due = 0.0
        self._prev_ts: float | None = None

    def due(self, ts: float | None) -> float:
        """Offset of the next event, whose log stamp is ``ts`` (``None`` = unknown)."""
        if self._rate is not None:
            # count / rate, not a running sum, so rounding never drifts.
            self._count += 1
            return (self._count - 1) / self._rate
        if self._speedup is not None and ts is not None:
            if self._prev_ts is not None:
                gap = max(ts - self._prev_ts, 0.0) / self._speedup
                self._due += min(gap, self._max_gap)
            # The latest stamp so far, so a late event's gap isn't replayed twice.
            self._prev_ts = ts if self._prev_ts is None else max(self._prev_ts, ts)
        return self._due


def sleep_for(due: float, elapsed: float, *, tick: float = TICK_SECONDS) -> float:
    """Seconds to sleep before sending an event due at ``due``; 0 unless ``tick`` ahead.

    Examples:
        >>> sleep_for(1.0, 0.5), sleep_for(1.0, 0.995), sleep_for(1.0, 2.0)
        (0.5, 0.0, 0.0)
    """
    lead = due - elapsed
    return lead if lead >= tick else 0.0


async def replay(
    settings: Settings,
    path: Path,
    *,
    rate: float | None = None,
    speedup: float | None = None,
    limit: int | None = None,
    progress: bool = True,
    on_sent: Callable[[int], None] | None = None,
    pause: Pause | None = None,
) -> ReplayStats:
    """Produce a file's events into ``settings.events_topic``, keyed by user id.

    The Kafka record timestamp is left to the producer (send time), which the
    worker uses to measure end-to-end latency.

    Args:
        settings: Broker address and topic names.
        path: A canonical CSV or JSONL file, optionally gzipped.
        rate: Events per second; ``None`` = as fast as possible.
        speedup: Follow the log's own pace this many times faster, each gap
            capped at ``MAX_GAP_SECONDS`` of real time.
        limit: Stop after this many events.
        progress: Show a progress bar on stderr.
        on_sent: Called with the number of events in each acknowledged chunk.
        pause: Where to hold the replay, and until when.

    Returns:
        The counts; every event counted was acknowledged by the broker.

    Raises:
        ValueError: Bad arguments, or a malformed line in the file (every event
            before it is delivered first, none after it).
        aiokafka.errors.KafkaError: The broker failed or rejected a send.
    """
    pacer = Pacer(rate=rate, speedup=speedup)
    events = read_events(path, limit=limit)
    log.info(
        "replaying %s into topic %s on %s (rate=%s, speedup=%s, limit=%s)",
        path,
        settings.events_topic,
        settings.bootstrap,
        rate,
        speedup,
        limit,
    )
    producer = AIOKafkaProducer(
        **producer_options(settings),
        # Batches are built by _Batches (so linger_ms doesn't apply); 16 KiB
        # default batches cap throughput near 9k/s (DESIGN.md measurements).
        max_batch_size=512 * 1024,
    )
    try:
        await producer.start()
        with _progress_bar(enabled=progress, total=limit, on_sent=on_sent) as advance:
            stats = await _send_all(
                producer, settings.events_topic, events, pacer=pacer, on_sent=advance, pause=pause
            )
    finally:
        await producer.stop()  # flushes whatever is still buffered
    log.info("replayed %d events in %.2f s (%.0f events/s)", stats.sent, stats.seconds, stats.rate)
    return stats


async def _send_all(
    producer: AIOKafkaProducer,
    topic: str,
    events: Iterable[dict[str, Any]],
    *,
    pacer: Pacer,
    on_sent: Callable[[int], None],
    pause: Pause | None = None,
) -> ReplayStats:
    batches = _Batches(producer, topic)
    start = chunk_start = time.monotonic()
    sent = 0
    first_ts = last_ts = None
    try:
        for index, event in enumerate(events):
            if pause is not None and index == pause.after:
                sent += await batches.end_chunk(on_sent, keep=0)
                held = time.monotonic()
                await pause.until.wait()
                start += time.monotonic() - held
                chunk_start = time.monotonic()
            ts = _ts(event)
            first_ts = ts if first_ts is None else first_ts
            last_ts = ts if ts is not None else last_ts
            delay = sleep_for(pacer.due(ts), time.monotonic() - start)
            if delay:
                await batches.send()  # what is due now must not wait out the sleep
                await asyncio.sleep(delay)
            user_id = event.get("user_id")
            key = None if user_id is None else user_key(str(user_id))
            await batches.add(key, orjson.dumps(event))
            if batches.in_chunk >= CHUNK_EVENTS or time.monotonic() - chunk_start >= CHUNK_SECONDS:
                sent += await batches.end_chunk(on_sent, keep=1)
                chunk_start = time.monotonic()
    except ValueError:
        # A malformed line: deliver everything before it, so the outcome is
        # exact; a rerun repeats those events with the same ids.
        await batches.end_chunk(on_sent, keep=0)
        raise
    sent += await batches.end_chunk(on_sent, keep=0)
    return ReplayStats(
        sent=sent, seconds=time.monotonic() - start, first_ts=first_ts, last_ts=last_ts
    )


class _Batches:
    """The replay's records in chunks of per-partition batches (``streams.kafka.produce``).

    A chunk's acknowledgements are awaited only after the next chunk is built,
    which hides the broker's round trip while keeping the outcome exact.
    """

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self._batches = PartitionBatches(producer)
        self._topic = topic
        self._chunk: list[Sent] = []
        self._chunks: deque[list[Sent]] = deque()
        #: Records added since the last chunk ended.
        self.in_chunk = 0

    async def add(self, key: bytes | None, value: bytes) -> None:
        """Append a record to its partition's batch."""
        await self._batches.add(self._topic, key, value)
        self.in_chunk += 1

    async def send(self) -> None:
        """Hand every open batch to the producer; closed batches go out without linger."""
        self._chunk.extend(await self._batches.submit())

    async def end_chunk(self, on_sent: Callable[[int], None], *, keep: int) -> int:
        """Send the chunk, then wait for all but the newest ``keep`` chunks; returns records acked.

        ``keep=1`` builds the next chunk while this one is in flight, which
        hides the broker's round trip; any failure raises.
        """
        await self.send()
        self._chunks.append(self._chunk)
        self._chunk = []
        self.in_chunk = 0
        acked = 0
        while len(self._chunks) > keep:
            chunk = self._chunks.popleft()
            await asyncio.gather(*(future for future, _ in chunk))
            count = sum(records for _, records in chunk)
            if count:
                on_sent(count)
            acked += count
        return acked


def _ts(event: dict[str, Any]) -> float | None:
    ts = event.get("ts")
    # JSONL events are not validated here; a bad stamp just doesn't pace.
    return float(ts) if isinstance(ts, int | float) and not isinstance(ts, bool) else None


@contextmanager
def _progress_bar(
    *, enabled: bool, total: int | None, on_sent: Callable[[int], None] | None
) -> Iterator[Callable[[int], None]]:
    """Yield the per-chunk callback: advance a rich bar on stderr, then call ``on_sent``."""
    columns = (
        TextColumn("replay"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:,.0f} events/s"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), disable=not enabled) as bar:
        task = bar.add_task("replay", total=total, rate=0.0)
        start = time.monotonic()
        sent = 0

        def advance(count: int) -> None:
            nonlocal sent
            sent += count
            bar.update(task, advance=count, rate=sent / max(time.monotonic() - start, 1e-9))
            if on_sent is not None:
                on_sent(count)

        yield advance
