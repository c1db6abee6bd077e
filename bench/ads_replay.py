"""Sponsored items replayed on a log: revenue, click-through, quality cost, throughput, pacing.

The demo's small served ranker and its click calibrator are trained on the log's
first half (at most 20,000 events), as ``intentstream train`` fits them; the rest
is replayed in live batches (:func:`cut`) through the worker's own pipeline in this
process (``build_pipeline``, records keyed and partitioned as a producer does,
tables in dicts), with seeded synthetic campaigns in its campaign book.

* Ads on and off: the same batches through a pipeline with sponsored items and one
  with ``ads_slots=0``, taking turns: revenue, fill rate, click-through of
  sponsored and organic slots, HR@10 and NDCG@10 of the lists shown, events/s on
  one thread (also in batches of ``--batch`` events, as under load).
* Pacing: the replay split over two workers (partitions in halves, as Kafka assigns
  them), each one's spend records reaching the other's spend book ``L`` batches
  late, standing for the spend topic; the overshoot of daily budgets at each lag.

A slot is *clicked* when the shopper's next view or click in the session is its
item. Days are UTC days of event time.

What is read off the served lists is in ``ads_measures.py``.

Run: ``.venv/bin/python bench/ads_replay.py [--data EVENTS] [--campaigns 200] [--seed 0]
[--events N] [--batch 1000]`` (RetailRocket sample by default; about 5 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import torch
from ads_measures import (
    PLACES,
    Event,
    Followers,
    K,
    Served,
    click_through,
    followers,
    hit_rates,
    origins,
)
from rich.progress import track

from model.calibration import ClickCalibrator
from model.checkpoint import Checkpoint, load_checkpoint
from model.serving.scorers import CheckpointScorer, ItemScorer, ScoredItems
from model.training.fit import fit
from model.training.train import TrainConfig
from online_learning.prequential import RankingSnapshot
from streams.client.partitioner import partition_for
from streams.ops import demo_model
from streams.ops.event_log import read_events
from streams.pipeline.ads.auction import FIRST_SLOT, SLOT_GAP
from streams.pipeline.ads.campaigns import Campaign, parse_campaign
from streams.pipeline.ads.spend import SECONDS_PER_DAY, SpendDelta, day_number
from streams.pipeline.batch import EventPipeline
from streams.pipeline.build import build_pipeline
from streams.pipeline.pseudonyms import Pseudonymizer
from streams.pipeline.records import InputRecord
from streams.pipeline.validation import Rejection
from streams.settings import Settings
from streams.worker.process import settle_heap

DATA = Path("../shared/data/retailrocket-sample/events.csv.gz")
KEY = bytes(32)
WORKERS = 2
#: The loaded replay is short (a few dozen batches): rounds of it, so one slow moment
#: of a shared machine does not decide its figure.
LOADED_ROUNDS = 5
#: Spend lags in batches: none, minutes, an hour and most of a day of the sample's time.
LAGS = (0, 1, 5, 50, 500)
#: Share of its daily budget a campaign has spent when it counts as exhausted.
EXHAUSTED = 0.95
#: Share of the catalogue (by events in the history) that counts as popular items.
POPULAR_SHARE = 0.05
PURCHASE_BID_SHARE = 0.2
TARGETED_SHARE = 0.25
#: Daily budgets in bids: 1 to 5 clicks, or 1 to 4 purchases, a day (log-uniform).
CLICKS_A_DAY = (1.0, 5.0)
PURCHASES_A_DAY = (1.0, 4.0)

#: Per batch, each worker's records.
Steps = list[list[list[InputRecord]]]


def synthetic_campaigns(
    history: Sequence[Event], catalogue: dict[str, str], *, count: int, seed: int, start: float
) -> list[Campaign]:
    """``count`` seeded campaigns of 5-20 catalogue items each, popular and tail items mixed.

    Bids per click 0.05-1.00 (a fifth per purchase, 1-20); budgets buy a few clicks
    (or purchases) a day at the bid, so some run out; a quarter target their items'
    categories. Each is read by ``parse_campaign``, as the campaign feed reads it.
    """
    rng = np.random.default_rng(seed)
    seen = Counter(e["item_id"] for e in history if e.get("item_id"))
    ranked = sorted(catalogue, key=lambda item: (-seen[item], item))
    cut = max(1, round(len(ranked) * POPULAR_SHARE))
    popular, tail = np.array(ranked[:cut]), np.array(ranked[cut:])
    campaigns = []
    for n in range(count):
        size = int(rng.integers(5, 21))
        from_popular = min(int(rng.binomial(size, rng.uniform(0.0, 0.5))), len(popular))
        items = [
            *rng.choice(popular, from_popular, replace=False).tolist(),
            *rng.choice(tail, size - from_popular, replace=False).tolist(),
        ]
        per = "purchase" if rng.random() < PURCHASE_BID_SHARE else "click"
        amount = rng.uniform(1.0, 20.0) if per == "purchase" else rng.uniform(0.05, 1.0)
        low, high = np.log(PURCHASES_A_DAY if per == "purchase" else CLICKS_A_DAY)
        record: dict[str, Any] = {
            "campaign_id": f"c{n}",
            "advertiser": f"a{n % 50}",
            "items": items,
            "bid": {"per": per, "amount": round(amount, 2)},
            "daily_budget": round(amount * float(np.exp(rng.uniform(low, high))), 2),
            "start": start,
            "end": None,
        }
        if rng.random() < TARGETED_SHARE:
            record["targeting"] = {"categories": sorted({catalogue[i] for i in items})}
        campaign = parse_campaign(f"c{n}".encode(), orjson.dumps(record))
        if isinstance(campaign, Rejection):
            raise ValueError(f"synthetic campaign c{n} rejected: {campaign.detail}")
        campaigns.append(campaign)
    return campaigns


def train(data: Path, *, events: int, seed: int) -> tuple[Checkpoint, ClickCalibrator]:
    """The demo's model trained on the log's first ``events`` events, and its calibrator."""
    with tempfile.TemporaryDirectory() as work:
        history, run = Path(work) / "history.csv.gz", Path(work) / "run"
        demo_model.write_history(data, history, events=events)
        config = TrainConfig(
            epochs=demo_model.DEMO_EPOCHS, max_minutes=demo_model.DEMO_MAX_MINUTES, seed=seed
        )
        options = demo_model.DEMO_SCORER
        fit(history, run, train_config=config, scorer_options=options, progress=False)
        checkpoint = load_checkpoint(run)
    if checkpoint.calibrator is None:
        raise SystemExit("the training run fitted no click calibrator")
    return checkpoint, checkpoint.calibrator


class Remembered(CheckpointScorer):
    """The served ranker, each list made once per history and depth, then handed out again.

    The lag runs replay the same events, so the same histories: they measure spend,
    not speed, and need not pay for the same lists again. Never where events/s are.
    """

    def __init__(self, checkpoint: Checkpoint) -> None:
        super().__init__(checkpoint)
        self._lists: dict[tuple[tuple[str, ...], int], ScoredItems] = {}

    def score_many(self, histories: Sequence[Sequence[str]], /, *, k: int) -> list[ScoredItems]:
        """The served ranker's lists, each made once (copies: callers may change them)."""
        keys = [(tuple(history), k) for history in histories]
        new = [key for key in dict.fromkeys(keys) if key not in self._lists]
        if new:
            self._lists.update(zip(new, super().score_many([h for h, _ in new], k=k), strict=True))
        return [list(self._lists[key]) for key in keys]


@dataclass
class Worker:
    """One worker's pipeline, tables in dicts, and what it served, charged, counted and took."""

    pipeline: EventPipeline
    states: dict[bytes, bytes] = field(default_factory=dict)
    keys: dict[bytes, bytes] = field(default_factory=dict)
    served: Served = field(default_factory=dict)
    spend: list[SpendDelta] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    online: RankingSnapshot | None = None
    seconds: float = 0.0

    def process(self, records: list[InputRecord]) -> list[bytes]:
        """Process one batch as the handler would; its spend records' values."""
        started = time.perf_counter()
        result = self.pipeline.process(records, read_state=self.states.get, read_key=self.keys.get)
        self.seconds += time.perf_counter() - started
        result.changes.apply(self.states, self.keys)
        for record in result.recommendations:
            body = orjson.loads(record.value or b"{}")
            self.served[body["event_id"]] = [
                (entry["item_id"], entry.get("sponsored", False)) for entry in body["items"]
            ]
        values = [record.value or b"" for record in result.ad_spend]
        self.spend.extend(SpendDelta.from_json(value)[1] for value in values)
        stats, self.online = result.stats, result.stats.online
        self.counts.update(stats.ads_auctions)
        self.counts.update(events=len(records), slots=stats.ads_slots_offered)
        return values

    def receive(self, values: Sequence[bytes]) -> None:
        """Add spend records from the spend topic, skipping its own, as the spend feed does."""
        for value in values:
            writer, delta = SpendDelta.from_json(value)
            if writer != self.pipeline.spend.worker_id:
                self.pipeline.spend.add(delta)


def new_worker(
    settings: Settings, scorer: ItemScorer, campaigns: Sequence[Campaign], name: str
) -> Worker:
    """A worker's pipeline serving ``scorer``, its campaign book holding ``campaigns``."""
    pipeline = build_pipeline(
        settings, pseudonymizer=Pseudonymizer(KEY), master_key=KEY, scorer=scorer, worker_id=name
    )
    for campaign in campaigns:
        if not pipeline.campaigns.upsert(campaign):
            raise ValueError("ads_max_campaigns is below --campaigns")
    return Worker(pipeline)


def cut(events: Sequence[Event], *, size: int, live: bool) -> list[list[Event]]:
    """The log's events in batches of at most ``size``; ``live``, each ends before a
    shopper's second event.

    Live, a shopper's next event comes seconds after their answer, which takes
    milliseconds; batches of a fixed size would put most next events in the batch
    that answers the event before, before any list was shown or any sponsored slot
    could be charged.
    """
    out: list[list[Event]] = []
    users: set[str] = set()
    for event in events:
        user = event["user_id"]
        if not out or len(out[-1]) == size or (live and user in users):
            out.append([])
            users = set()
        users.add(user)
        out[-1].append(event)
    return out


def records(batched: Sequence[Sequence[Event]], settings: Settings, *, workers: int) -> Steps:
    """Each batch's records per worker: keyed and partitioned as a producer does, and the
    partitions split into contiguous ranges, one a worker, as Kafka assigns them."""
    partitions, topic = settings.partitions, settings.events_topic
    offsets = [0] * partitions
    out = []
    for batch in batched:
        parts: list[list[InputRecord]] = [[] for _ in range(workers)]
        for event in batch:
            user = event["user_id"]
            partition = partition_for(user, partitions)
            value, ts = orjson.dumps(event), float(event["ts"])
            record = InputRecord(user.encode(), value, topic, partition, offsets[partition], ts)
            offsets[partition] += 1
            parts[partition * workers // partitions].append(record)
        out.append(parts)
    return out


def side_by_side(
    settings: Settings, scorer: ItemScorer, campaigns: Sequence[Campaign], steps: Steps
) -> tuple[Worker, Worker]:
    """The same batches through a pipeline with sponsored items and one without, alternating.

    With the worker's garbage-collector settings, what was built so far frozen out of
    its walks as a worker's start-up heap is: full collections of a heap that grows
    with each run would land in either pipeline's time.
    """
    on = new_worker(settings, scorer, campaigns, "on")
    off = new_worker(settings.model_copy(update={"ads_slots": 0}), scorer, campaigns, "off")
    settle_heap()
    for n, [batch] in enumerate(track(steps, description="ads on and off", transient=True)):
        # Who goes first alternates, so neither always meets caches the other warmed.
        for worker in (on, off) if n % 2 else (off, on):
            worker.process(batch)
    return on, off


def with_lag(
    settings: Settings, scorer: ItemScorer, campaigns: Sequence[Campaign], steps: Steps, lag: int
) -> list[Worker]:
    """The replay over two workers; each one's spend reaches the other ``lag`` batches late.

    Lag 0: before the other's next batch, as if the spend topic took no time.
    """
    workers = [new_worker(settings, scorer, campaigns, f"w{n}") for n in range(WORKERS)]
    in_flight: list[tuple[int, list[bytes]]] = []
    for step, parts in enumerate(track(steps, description=f"2 workers, lag {lag}", transient=True)):
        arrived = [values for due, values in in_flight if due <= step]
        in_flight = [(due, values) for due, values in in_flight if due > step]
        for worker in workers:
            for values in arrived:
                worker.receive(values)
        for worker, part in zip(workers, parts, strict=True):
            in_flight.append((step + 1 + lag, worker.process(part)))
    return workers


def table(header: str, rows: Iterable[Sequence[object]]) -> None:
    """Print a markdown table: ``header`` is its column names joined by `` | ``."""
    print(f"| {header} |\n|{'---|' * (header.count(' | ') + 1)}")
    for row in rows:
        print(f"| {' | '.join(str(cell) for cell in row)} |")
    print(flush=True)


def overshoot_row(
    name: str, workers: Sequence[Worker], campaigns: Sequence[Campaign], *, tolerance: float
) -> list[str]:
    """Revenue, and spend past daily budgets over every campaign-day charged.

    Exhausted: :data:`EXHAUSTED` of the budget or more spent. Past one bid: over the budget by
    more than the bid, more than one last click (or purchase) explains. Total
    overshoot: the spend past budgets over the budgets of the campaign-days charged.
    """
    held = {c.campaign_id: c for c in campaigns}
    spent: defaultdict[tuple[str, str], float] = defaultdict(float)
    for worker in workers:
        for delta in worker.spend:
            spent[(delta.campaign_id, delta.day)] += delta.spend
    charged = [(held[cid], value) for (cid, _), value in spent.items() if value > 0]
    shares = [value / c.daily_budget - 1.0 for c, value in charged]
    past = sum(max(0.0, value - c.daily_budget) for c, value in charged)
    events = sum(worker.counts["events"] for worker in workers)
    return [
        name,
        f"{sum(spent.values()) * 1000 / events:.2f}",
        str(len(charged)),
        str(sum(share >= EXHAUSTED - 1 for share in shares)),
        str(sum(share > tolerance for share in shares)),
        str(sum(value > c.daily_budget + c.amount for c, value in charged)),
        f"{max([0.0, *shares]):.1%}",
        f"{past / max(sum(c.daily_budget for c, _ in charged), 1e-9):.2%}",
    ]


def print_revenue(on: Worker, campaigns: Sequence[Campaign]) -> None:
    """Revenue by bid type, the fill rate and the auctions' outcomes, sponsored items on."""
    per = {c.campaign_id: c.per for c in campaigns}
    counts = {kind: Counter[str]() for kind in ("click", "purchase")}
    spend = dict.fromkeys(counts, 0.0)
    for d in on.spend:
        counts[per[d.campaign_id]].update(shown=d.impressions, clicks=d.clicks, bought=d.purchases)
        spend[per[d.campaign_id]] += d.spend
    thousand = 1000 / on.counts["events"]
    rows = []
    for kind, n in counts.items():
        held = sum(c.per == kind for c in campaigns)
        rate = n["clicks"] / max(n["shown"], 1)
        rows.append([kind, held, f"{n['shown']:,}", f"{n['clicks']:,}", f"{rate:.2%}"])
        rows[-1] += [f"{n['bought']:,}", f"{spend[kind]:.2f}", f"{spend[kind] * thousand:.2f}"]
    table(
        "bids per | campaigns | impressions | clicks (attributed) | click rate | purchases "
        "(attributed) | spend charged | revenue per 1,000 events",
        rows,
    )
    shown = sum(n["shown"] for n in counts.values())
    print(
        f"Revenue {sum(spend.values()) * thousand:.2f} per 1,000 events; fill rate "
        f"{shown / on.counts['slots']:.1%} ({shown:,} impressions).\n"
    )
    outcomes = Counter({k: v for k, v in on.counts.items() if k not in ("events", "slots")})
    table(
        "auction outcome | answers | share",
        ([k, f"{n:,}", f"{n / outcomes.total():.1%}"] for k, n in outcomes.most_common()),
    )


def print_quality(on: Worker, off: Worker, after: Followers) -> None:
    """Click-through of sponsored and organic slots; where sponsored items came from; HR@10."""
    top, taken = range(K), range(FIRST_SLOT, K, SLOT_GAP)
    rows = []
    for name, worker, sponsored, places, new_only in (
        ("sponsored, ads on", on, True, top, False),
        ("organic top 10, ads off", off, False, top, False),
        ("organic top 10 but the item viewed, ads off", off, False, top, True),
        ("organic 3rd and 7th, ads off", off, False, taken, False),
    ):
        slots, clicked = click_through(
            worker.served, after, sponsored=sponsored, places=places, new_only=new_only
        )
        rows.append([name, f"{slots:,}", f"{clicked:,}", f"{clicked / max(slots, 1):.2%}"])
    table("slots | shown | clicked | click-through", rows)
    came = origins(on.served, off.served)
    table(
        "sponsored item's place without ads | impressions | share",
        (
            [name, f"{came[name]:,}", f"{came[name] / max(came.total(), 1):.1%}"]
            for name, _ in PLACES
        ),
    )
    rows = []
    for name, worker in (("ads off", off), ("ads on", on)):
        shown, ndcg, organic, cases = hit_rates(worker.served, after)
        monitor = "-" if worker.online is None else f"{worker.online.hr:.2%}"
        rows.append([name, f"{shown:.2%}", f"{ndcg:.4f}", f"{organic:.2%}", monitor, f"{cases:,}"])
    table(
        "answers | HR@10 as shown | NDCG@10 as shown | HR@10, organic entries | "
        "HR@10, model's list (monitor) | cases",
        rows,
    )


def print_speed(runs: dict[str, list[tuple[Worker, Worker]]]) -> None:
    """Events/s with and without sponsored items on the same batches, and the time added
    (over every round of a run, and each round's)."""
    rows = []
    for name, rounds in runs.items():
        events = sum(on.counts["events"] for on, _ in rounds)
        on_s, off_s = (sum(pair[side].seconds for pair in rounds) for side in (0, 1))
        each = ", ".join(f"{on.seconds / off.seconds - 1:+.0%}" for on, off in rounds)
        rows.append([name, f"{events / off_s:,.0f}", f"{events / on_s:,.0f}"])
        rows[-1] += [f"{on_s / off_s - 1:+.1%}", each]
    table(
        "batches | ads off, events/s | ads on, events/s | time per event with ads | each round",
        rows,
    )


@dataclass(frozen=True)
class Setup:
    """The replayed events, the model and the campaigns."""

    replay: list[Event]
    checkpoint: Checkpoint
    campaigns: list[Campaign]


def prepare(args: argparse.Namespace, settings: Settings) -> Setup:
    """Train on the log's first half; campaigns from the day the replay starts."""
    started = time.monotonic()
    events = list(read_events(args.data, limit=args.events))
    split = demo_model.history_size(len(events))
    history, replay = events[:split], events[split:]
    checkpoint, calibrator = train(args.data, events=split, seed=args.seed)
    clicks = calibrator.probabilities(np.arange(calibrator.depth))
    catalogue = {e["item_id"]: e.get("category", "") for e in events if e.get("item_id")}
    first_day = float(day_number(float(replay[0]["ts"])) * SECONDS_PER_DAY)
    campaigns = synthetic_campaigns(
        history, catalogue, count=args.campaigns, seed=args.seed, start=first_day
    )
    print(
        f"{len(history):,} events trained on ({time.monotonic() - started:.0f} s), "
        f"{len(replay):,} replayed; {len(campaigns)} campaigns over "
        f"{sum(len(c.items) for c in campaigns):,} items; the relevance floor reaches place "
        f"{int((clicks >= settings.ads_min_click_probability).sum())}"
    )
    return Setup(replay, checkpoint, campaigns)


def print_pacing(
    setup: Setup, on: Worker, live: list[list[Event]], settings: Settings, minutes: float
) -> None:
    """Overshoot of one worker (``on``) and of two at each spend lag (``minutes`` a batch)."""
    tolerance = settings.ads_overspend_tolerance
    steps = records(live, settings, workers=WORKERS)
    remembered = Remembered(setup.checkpoint)
    rows = [overshoot_row("1 worker", [on], setup.campaigns, tolerance=tolerance)]
    for lag in LAGS:
        workers = with_lag(settings, remembered, setup.campaigns, steps, lag)
        name = f"2 workers, lag {lag} ({lag * minutes:,.0f} min)"
        rows.append(overshoot_row(name, workers, setup.campaigns, tolerance=tolerance))
    table(
        "workers, spend lag in batches (event time) | revenue per 1,000 events | campaign-days "
        f"charged | exhausted | over budget by > {tolerance:.0%} | past one bid | "
        "max overshoot | total overshoot",
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--campaigns", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--events", type=int, help="read only the log's first N events")
    parser.add_argument("--batch", type=int, default=1000, help="most events a batch holds")
    args = parser.parse_args()
    started = time.monotonic()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    settings = Settings(text_search=False)
    setup = prepare(args, settings)
    campaigns, replay = setup.campaigns, setup.replay
    scorer = CheckpointScorer(setup.checkpoint)
    live = cut(replay, size=args.batch, live=True)
    minutes = (float(replay[-1]["ts"]) - float(replay[0]["ts"])) / 60 / len(live)
    print(
        f"{len(live):,} live batches: {len(replay) / len(live):.1f} events, {minutes:.1f} "
        "minutes of event time each\n",
        flush=True,
    )
    on, off = side_by_side(settings, scorer, campaigns, records(live, settings, workers=1))
    print_revenue(on, campaigns)
    print_quality(on, off, followers(replay))
    loaded = records(cut(replay, size=args.batch, live=False), settings, workers=1)
    full = [side_by_side(settings, scorer, campaigns, loaded) for _ in range(LOADED_ROUNDS)]
    print_speed({"live (above)": [(on, off)], f"{args.batch:,} events, as under load": full})
    print_pacing(setup, on, live, settings, minutes)
    print(f"{time.monotonic() - started:.0f} s in all")


if __name__ == "__main__":
    main()
