"""The demo's sponsored-items campaigns, made from its own log.

A public log has no advertisers, so the demo makes a few: sellers promoting items
shoppers of the log do look at, but not its very top sellers (those need no
promotion, and the model ranks them high for everyone). Seeded, so every run
shows the same campaigns; each is checked as a worker checks it.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from typing import Any

import orjson

from streams.pipeline.ads.campaigns import parse_campaign
from streams.pipeline.validation import Rejection

#: Campaigns, items each, and the popularity ranks their items are drawn from.
CAMPAIGNS = 12
ITEMS_EACH = 5
POPULAR_RANKS = range(20, 200)
#: Per-click bids (shop currency) and a daily budget small enough for pacing to show.
BIDS = (0.10, 0.60)
DAILY_BUDGET = 3.0


def demo_campaigns(events: Iterable[dict[str, Any]], *, seed: int = 7) -> list[tuple[str, bytes]]:
    """``(campaign id, record value)`` of the demo's campaigns over the items of ``events``.

    They run from the log's first event on, without end; an empty log gives none.
    """
    views: Counter[str] = Counter()
    start: float | None = None
    for event in events:
        start = float(event["ts"]) if start is None else min(start, float(event["ts"]))
        if event.get("item_id") is not None:
            views[str(event["item_id"])] += 1
    ranked = [item for item, _ in views.most_common(POPULAR_RANKS.stop)][POPULAR_RANKS.start :]
    if start is None or len(ranked) < ITEMS_EACH:
        return []
    pick = random.Random(seed)
    campaigns = []
    for number in range(CAMPAIGNS):
        campaign_id = f"demo-{number:02d}"
        value = orjson.dumps(
            {
                "campaign_id": campaign_id,
                "advertiser": f"seller-{number % 4}",
                "items": pick.sample(ranked, ITEMS_EACH),
                "bid": {"per": "click", "amount": round(pick.uniform(*BIDS), 2)},
                "daily_budget": DAILY_BUDGET,
                "start": start,
                "end": None,
            }
        )
        checked = parse_campaign(campaign_id.encode(), value)
        if isinstance(checked, Rejection):  # a bug here, not bad input
            raise ValueError(f"demo campaign {campaign_id}: {checked.detail}")
        campaigns.append((campaign_id, value))
    return campaigns
