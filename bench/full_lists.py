"""What a new shop's stream baseline answers, by source of its list fill: online HR@10,
discovery and list length on the demo log, replayed through the worker's pipeline.

The demo's RetailRocket log (bundled with the package) is replayed in event-time
order through ``EventPipeline.process`` in this process (default settings, batches of
``--batch``), from a fresh start: no model, no history. Each answer is judged as the
demo's live view judges it (``streams.ops.demo_view.ServedQuality``): an event is a
hit when its item is in the top 10 of the list answered to its shopper's previous
event, and a discovery when that item is also new to the shopper. Configurations:

* ``own items``: no catalogue; the lists hold released co-visitation, the shopper's
  own items and thresholded popularity (a new shop: mostly own items);
* ``+ catalogue popularity``: the catalogue's item ids are known, so every window
  releases every item's popularity, noisy, with no threshold, and lists are filled;
* ``+ category popularity``: the catalogue also gives each item's category, and
  popular items of the shopper's recent categories fill first (the default when a
  catalogue is known).

The catalogue is the log's own items with their categories (the demo's stand-in for
a shop's catalogue, ``streams.ops.event_log.log_catalogue``). DP noise comes from
OpenDP's unseedable sampler: figures move a little between runs, so each
configuration runs ``--repeats`` times and the mean (min-max) is printed.

Run: ``.venv/bin/python bench/full_lists.py [--windows 3600 86400] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from model.serving.catalogue import CatalogueItems
from streams.ops.demo import BUNDLED_FILE
from streams.ops.demo_view import SECOND_HALF, ServedQuality, event_items
from streams.ops.event_log import log_catalogue, read_events
from streams.pipeline.build import build_pipeline
from streams.pipeline.pseudonyms import Pseudonymizer
from streams.pipeline.records import InputRecord
from streams.settings import Settings

KEY = "bench-full-lists-key-0123456789abcdef"
CONFIGS = ("own items", "+ catalogue popularity", "+ category popularity")


def catalogue_for(config: str, categories: Mapping[str, str | None]) -> CatalogueItems | None:
    """The catalogue a configuration knows: none, its ids, or its ids and categories."""
    if config == "own items":
        return None
    items = CatalogueItems()
    keep = config == "+ category popularity"
    items.update({item: category if keep else None for item, category in categories.items()})
    return items


def replay(
    events: list[dict[str, Any]],
    items: CatalogueItems | None,
    *,
    window: float,
    batch: int,
    quality: ServedQuality,
) -> list[int]:
    """Replay ``events`` through a fresh pipeline into ``quality``; the lists' lengths."""
    pipeline = build_pipeline(
        Settings(pseudonym_key=KEY, text_search=False, privacy_window_seconds=window),
        pseudonymizer=Pseudonymizer(KEY.encode()),
        master_key=bytes(32),
        items=items,
    )
    states: dict[bytes, bytes] = {}
    keys: dict[bytes, bytes] = {}
    now = time.time()
    records = [
        InputRecord(
            key=event["user_id"].encode(),
            value=orjson.dumps(event),
            topic="shop.events",
            partition=0,
            offset=offset,
            timestamp=now,
        )
        for offset, event in enumerate(events)
    ]
    lengths = []
    for start in range(0, len(records), batch):
        result = pipeline.process(
            records[start : start + batch], read_state=states.get, read_key=keys.get
        )
        result.changes.apply(states, keys)
        for record in result.recommendations:
            recommendation = orjson.loads(record.value or b"{}")
            quality.add(recommendation)
            lengths.append(len(recommendation["items"]))
    return lengths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=BUNDLED_FILE)
    parser.add_argument("--windows", type=float, nargs="+", default=[3600.0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=40)
    args = parser.parse_args()
    events = list(read_events(args.data))
    positions = event_items(args.data, limit=None)
    categories = log_catalogue(events)
    k = Settings().top_k
    print(f"{len(events):,} events, {len(categories):,} catalogue items; second half judged")
    print("window  configuration             HR@10 %            discovery %       full lists %")
    for window in args.windows:
        for config in CONFIGS:
            hits, finds, full = [], [], []
            for _ in range(args.repeats):
                quality = ServedQuality(positions, second_half_from=len(events) // 2)
                lengths = replay(
                    events,
                    catalogue_for(config, categories),
                    window=window,
                    batch=args.batch,
                    quality=quality,
                )
                second = quality.total(SECOND_HALF)
                hits.append(100 * (second.hit_rate or 0.0))
                finds.append(100 * (second.discovery_rate or 0.0))
                full.append(100 * sum(n >= k for n in lengths) / max(len(lengths), 1))
            print(
                f"{window / 3600:4.0f} h  {config:24}  {_spread(hits):18} {_spread(finds):17} "
                f"{_spread(full)}"
            )


def _spread(values: list[float]) -> str:
    return f"{statistics.fmean(values):.1f} ({min(values):.1f}-{max(values):.1f})"


if __name__ == "__main__":
    main()
