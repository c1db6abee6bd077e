"""The demo's live view: counts recommendations and dead letters as they arrive, and
which model answered with what online HR@10."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from array import array
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from streams.kafka.security import client_security
from streams.ops.demo_model import DemoTraining, history_size
from streams.ops.event_log import read_events
from streams.ops.status import Scrape
from streams.settings import Settings

log = logging.getLogger(__name__)

REFRESH_SECONDS = 0.25
RATE_WINDOW_SECONDS = 2.0
#: List length of the online hit rate (as the worker's own, docs/operating.md).
HIT_K = 10


@dataclass
class VersionQuality:
    """What one model version answered, and how its lists did on the next event."""

    answered: int = 0
    checked: int = 0
    hits: int = 0
    #: Hits on items the shopper had not met before in the log: what they discovered.
    discoveries: int = 0

    @property
    def hit_rate(self) -> float | None:
        """Online HR@10: the share of checked events whose item was in the previous list."""
        return self.hits / self.checked if self.checked else None

    @property
    def discovery_rate(self) -> float | None:
        """The share of checked events that were such a hit on an item new to the shopper."""
        return self.discoveries / self.checked if self.checked else None


#: The worker's counter of model swaps, by outcome.
MODEL_SWAPS = "intentstream_model_swaps_total"
AD_CLICKS = "intentstream_ads_clicks_total"
AD_SPEND = "intentstream_ads_spend_total"
#: The two parts of the demo's log: the history a model trains on, and the rest.
FIRST_HALF, SECOND_HALF = "first half", "second half"


class ServedQuality:
    """Which model answered, and its online HR@10 ("test, then train", per shopper),
    in each part of the log.

    Each answered event is checked against the answer to its shopper's previous
    event, as a shopper at their own pace would have seen it; the hit counts for the
    version that made that list, in the part of the log the event is in. (The
    worker's own check skips an event that came before that answer was out, which a
    replay's compressed time makes common.) A hit on an item the shopper had not
    met before in the log is also a discovery: showing a shopper what they already
    looked at is easy, finding what they will want next is the model's job. The demo
    knows each event's place and item from the log it replays (event ids are
    stable, ``streams.ops.event_log``).

    Examples:
        >>> quality = ServedQuality({"e1": (0, "a"), "e2": (1, "b")}, second_half_from=1)
        >>> quality.add({"user_id": "u", "event_id": "e1", "model_version": "m", "items": [
        ...     {"item_id": "b", "score": 1.0}]})
        >>> quality.add({"user_id": "u", "event_id": "e2", "model_version": "m", "items": []})
        >>> quality.by_part[("m", SECOND_HALF)]
        VersionQuality(answered=1, checked=1, hits=1, discoveries=1)
        >>> quality.total(SECOND_HALF).hit_rate
        1.0
    """

    def __init__(
        self, events: Mapping[str, tuple[int, str | None]], *, second_half_from: int
    ) -> None:
        self._events = events
        self._second_half_from = second_half_from
        self._last: dict[str, tuple[str, frozenset[str]]] = {}
        self._seen: dict[str, set[str]] = {}
        #: (model version, part of the log) -> what it answered and how its lists did.
        self.by_part: dict[tuple[str, str], VersionQuality] = {}

    def add(self, recommendation: Mapping[str, Any]) -> None:
        """Count one recommendation, and check its event against the shopper's last list."""
        version, user = recommendation["model_version"], recommendation["user_id"]
        position, item = self._events.get(recommendation["event_id"], (-1, None))
        part = SECOND_HALF if position >= self._second_half_from else FIRST_HALF
        self._quality(version, part).answered += 1
        last, seen = self._last.get(user), self._seen.setdefault(user, set())
        if last is not None and item is not None:
            made_by, top = last
            checked = self._quality(made_by, part)
            checked.checked += 1
            checked.hits += item in top
            checked.discoveries += item in top and item not in seen
        if item is not None:
            seen.add(item)
        top_items = recommendation["items"][:HIT_K]
        self._last[user] = (version, frozenset(entry["item_id"] for entry in top_items))

    def total(self, part: str) -> VersionQuality:
        """Every answer in ``part``, whichever version made it."""
        parts = [q for (_, of), q in self.by_part.items() if of == part]
        return VersionQuality(
            answered=sum(q.answered for q in parts),
            checked=sum(q.checked for q in parts),
            hits=sum(q.hits for q in parts),
            discoveries=sum(q.discoveries for q in parts),
        )

    def _quality(self, version: str, part: str) -> VersionQuality:
        return self.by_part.setdefault((version, part), VersionQuality())


def event_items(path: Path, *, limit: int | None) -> dict[str, tuple[int, str | None]]:
    """Event id -> (place in the log, item id or None) of the events the demo replays."""
    return {
        str(event["event_id"]): (
            position,
            None if event.get("item_id") is None else str(event["item_id"]),
        )
        for position, event in enumerate(read_events(path, limit=limit))
    }


@dataclass
class DemoMonitor:
    """Running totals of one demo run (monotonic clock)."""

    started_at: float
    worker_alive: Callable[[], bool]
    sent: int = 0
    recommendations: int = 0
    dead_letters: int = 0
    replay_total: int | None = None
    first_recommendation_at: float | None = None
    latencies_ms: array[float] = field(default_factory=lambda: array("d"))
    quality: ServedQuality = field(default_factory=lambda: ServedQuality({}, second_half_from=0))
    #: Events of the log's first half, which the demo's model trains on.
    history_events: int = 0
    #: Whether a model trains on them (``--model``).
    trains: bool = False
    #: The model training now, and the version published once it is done.
    training: DemoTraining | None = None
    model_version: str | None = None
    #: Whether the worker swapped back from it: it failed probation.
    failed_probation: bool = False
    #: Lists holding a sponsored item; the worker's clicks on them and spend so far.
    sponsored_lists: int = 0
    ad_clicks: float = 0.0
    ad_spend: float = 0.0
    _marks: list[tuple[float, int]] = field(default_factory=list)

    def on_metrics(self, scrape: Scrape) -> None:
        """Note from the worker's metrics whether a model failed probation there."""
        failed = scrape.value(MODEL_SWAPS, outcome="failed_probation")
        self.failed_probation = self.failed_probation or bool(failed)
        self.ad_clicks = scrape.total(AD_CLICKS) or self.ad_clicks
        self.ad_spend = scrape.total(AD_SPEND) or self.ad_spend

    def sponsored_line(self) -> str:
        """What sponsored items did: lists holding one, clicks on them, spend."""
        return (
            f"sponsored items in {self.sponsored_lists:,} lists, {self.ad_clicks:,.0f} clicks "
            f"on them, spend {self.ad_spend:,.2f}"
        )

    def split(self, events: Mapping[str, tuple[int, str | None]]) -> None:
        """Know the replayed log (:func:`event_items`): its first half is the history."""
        self.history_events = history_size(len(events))
        self.quality = ServedQuality(events, second_half_from=self.history_events)

    def on_sent(self, count: int) -> None:
        """Replay progress callback: ``count`` more events produced."""
        self.sent += count

    def replay_done(self, total: int) -> None:
        self.replay_total = total

    @property
    def answered(self) -> int:
        return self.recommendations + self.dead_letters

    @property
    def complete(self) -> bool:
        return self.replay_total is not None and self.answered >= self.replay_total

    def rate(self) -> float:
        """Answers per second over the last couple of seconds."""
        now = time.monotonic()
        self._marks.append((now, self.answered))
        while len(self._marks) > 2 and now - self._marks[0][0] > RATE_WINDOW_SECONDS:
            self._marks.pop(0)
        (t0, n0), (t1, n1) = self._marks[0], self._marks[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0

    def percentiles(self) -> tuple[float, float]:
        """p50 and p99 end-to-end latency in ms (0 before any recommendation)."""
        if not self.latencies_ms:
            return 0.0, 0.0
        p50, p99 = np.percentile(np.frombuffer(self.latencies_ms, dtype=np.float64), [50, 99])
        return float(p50), float(p99)

    def time_to_first(self) -> float | None:
        if self.first_recommendation_at is None:
            return None
        return self.first_recommendation_at - self.started_at


class LiveWatch:
    """Consumes outputs into the monitor while the live table refreshes."""

    def __init__(self, consumer: AIOKafkaConsumer, settings: Settings, monitor: DemoMonitor):
        self._consumer = consumer
        self._settings = settings
        self._monitor = monitor

    async def consume(self) -> None:
        monitor, recs_topic = self._monitor, self._settings.recommendations_topic
        while True:
            batches = await self._consumer.getmany(timeout_ms=200, max_records=5000)
            for tp, messages in batches.items():
                if tp.topic != recs_topic:
                    monitor.dead_letters += len(messages)
                    continue
                if monitor.first_recommendation_at is None and messages:
                    monitor.first_recommendation_at = time.monotonic()
                monitor.recommendations += len(messages)
                for message in messages:
                    recommendation = orjson.loads(message.value)
                    monitor.latencies_ms.append(recommendation["latency_ms"])
                    monitor.quality.add(recommendation)
                    monitor.sponsored_lists += any(
                        item.get("sponsored") for item in recommendation["items"]
                    )

    async def until_answered(self, *, timeout: float) -> None:
        """Wait until every replayed event has its answer, the worker died, or timeout."""
        deadline = time.monotonic() + timeout
        while not self._monitor.complete and time.monotonic() < deadline:
            if not self._monitor.worker_alive():
                log.error("the worker process exited; see its log in %s", self._settings.home)
                return
            await asyncio.sleep(REFRESH_SECONDS)
        if not self._monitor.complete:
            log.error("timed out waiting for answers: %s", _progress_line(self._monitor))


@contextlib.asynccontextmanager
async def watch(settings: Settings, monitor: DemoMonitor) -> AsyncIterator[LiveWatch]:
    """Start consuming recommendations and dead letters (from now on) with a live table."""
    consumer = AIOKafkaConsumer(
        settings.recommendations_topic,
        settings.dlq_topic,
        bootstrap_servers=settings.bootstrap,
        auto_offset_reset="latest",
        enable_auto_commit=False,
        **client_security(settings),
    )
    await consumer.start()
    try:
        await _wait_for_assignment(consumer)
        live_watch = LiveWatch(consumer, settings, monitor)
        consuming = asyncio.create_task(live_watch.consume())
        with Live(_table(monitor), refresh_per_second=4, transient=False) as live:
            refreshing = asyncio.create_task(_refresh(live, monitor))
            try:
                yield live_watch
            finally:
                for task in (consuming, refreshing):
                    task.cancel()
                await asyncio.gather(consuming, refreshing, return_exceptions=True)
                live.update(_table(monitor))
    finally:
        await consumer.stop()


async def _wait_for_assignment(consumer: AIOKafkaConsumer) -> None:
    """Resolve the 'latest' positions now, so outputs produced from here on are counted."""
    while not consumer.assignment():
        await asyncio.sleep(0.05)
    for tp in consumer.assignment():
        await consumer.position(tp)


async def _refresh(live: Live, monitor: DemoMonitor) -> None:
    while True:
        live.update(_table(monitor))
        await asyncio.sleep(REFRESH_SECONDS)


def _table(monitor: DemoMonitor) -> Table:
    p50, p99 = monitor.percentiles()
    first = monitor.time_to_first()
    table = Table(title="intentstream demo", show_header=True)
    for column in ("events in", "recommendations", "dead letters", "rate /s", "p50 ms", "p99 ms"):
        table.add_column(column, justify="right")
    table.add_row(
        f"{monitor.sent:,}",
        f"{monitor.recommendations:,}",
        f"{monitor.dead_letters:,}",
        f"{monitor.rate():,.0f}",
        f"{p50:,.1f}",
        f"{p99:,.1f}",
    )
    table.caption = (
        f"first recommendation after {first:.1f} s; " if first is not None else ""
    ) + monitor.sponsored_line()
    models = Table(show_header=True, title=_model_line(monitor))
    columns = ("model version", "part of the log", "answered", "online HR@10", "new to them")
    for column in (*columns, "checked"):
        models.add_column(column, justify="right")
    for (version, part), served in sorted(monitor.quality.by_part.items(), key=_part_order):
        models.add_row(
            version,
            part,
            f"{served.answered:,}",
            _percent(served.hit_rate),
            _percent(served.discovery_rate),
            f"{served.checked:,}",
        )
    second_half = monitor.quality.total(SECOND_HALF)
    models.caption = (
        f"every answer in the second half: HR@10 {_percent(second_half.hit_rate)}, "
        f"{_percent(second_half.discovery_rate)} on items new to the shopper"
    )
    grid = Table.grid()
    grid.add_row(table)
    grid.add_row(models)
    return grid


def _model_line(monitor: DemoMonitor) -> str:
    """What the demo's model is doing: training, served, or absent."""
    if not monitor.trains:
        return "the stream baseline answers (--no-model)"
    if monitor.training is not None:
        seconds = time.monotonic() - monitor.training.started_at
        return (
            f"a transformer trains on the first {monitor.history_events:,} events: "
            f"{monitor.training.epochs_done()} epochs in {seconds:.0f} s; the replay holds "
            "after them until it serves"
        )
    if monitor.model_version is None:
        return "the demo model did not train (see the log): the stream baseline answers"
    trained = f"{monitor.model_version} (trained on the first {monitor.history_events:,} events)"
    if monitor.failed_probation:
        return f"{trained} failed probation, its HR@10 below the baseline's: the baseline answers"
    return trained


def _progress_line(monitor: DemoMonitor) -> str:
    return f"{monitor.answered} of {monitor.replay_total} events answered"


def render_summary(monitor: DemoMonitor, *, settings: Settings, data: Path) -> None:
    """Print the run's figures once everything has stopped."""
    p50, p99 = monitor.percentiles()
    first = monitor.time_to_first()
    elapsed = time.monotonic() - monitor.started_at
    console = Console()
    console.print()
    console.print(
        f"[bold]{data.name}[/] on {settings.broker_kind} at {settings.bootstrap}: "
        f"{_progress_line(monitor)} ({monitor.recommendations:,} recommendations, "
        f"{monitor.dead_letters:,} dead letters); latency p50 {p50:.1f} ms, p99 {p99:.1f} ms; "
        f"first recommendation after {first if first is not None else float('nan'):.1f} s; "
        f"total {elapsed:.1f} s"
    )
    for (version, part), served in sorted(monitor.quality.by_part.items(), key=_part_order):
        console.print(
            f"{version}, {part} of the log: answered {served.answered:,} events; online "
            f"HR@10 {_percent(served.hit_rate)} ({_percent(served.discovery_rate)} on items "
            f"new to the shopper) over the {served.checked:,} events that followed its lists"
        )
    console.print(monitor.sponsored_line())
    second_half = monitor.quality.total(SECOND_HALF)
    console.print(
        "every answer in the second half of the log (the events a model trained on the first "
        f"never saw): online HR@10 {_percent(second_half.hit_rate)}, "
        f"{_percent(second_half.discovery_rate)} on items new to the shopper"
    )


def _part_order(entry: tuple[tuple[str, str], VersionQuality]) -> tuple[str, str]:
    (version, part), _ = entry
    return part, version


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{100 * share:.1f} %"
