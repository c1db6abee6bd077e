"""The demo's campaigns: valid, over items shoppers look at but not the top sellers, seeded."""

from __future__ import annotations

import orjson

from streams.ops.demo_campaigns import CAMPAIGNS, ITEMS_EACH, POPULAR_RANKS, demo_campaigns
from streams.pipeline.ads.campaigns import parse_campaign
from streams.pipeline.validation import Rejection


def _log(items: int) -> list[dict[str, object]]:
    """Item ``i{n}`` viewed ``items - n`` times: popularity rank n."""
    return [{"ts": 1000.0 + n, "item_id": f"i{n}"} for n in range(items) for _ in range(items - n)]


def test_the_campaigns_are_valid_and_promote_neither_the_top_nor_the_unseen() -> None:
    campaigns = demo_campaigns(_log(300))
    assert len(campaigns) == CAMPAIGNS
    for campaign_id, value in campaigns:
        parsed = parse_campaign(campaign_id.encode(), value)
        assert not isinstance(parsed, Rejection)
        assert parsed.start == 1000.0
        assert len(parsed.items) == ITEMS_EACH
        ranks = [int(item[1:]) for item in parsed.items]
        assert all(rank in POPULAR_RANKS for rank in ranks)


def test_the_same_log_gives_the_same_campaigns_and_a_tiny_log_none() -> None:
    assert demo_campaigns(_log(300)) == demo_campaigns(_log(300))
    assert demo_campaigns(_log(POPULAR_RANKS.start + ITEMS_EACH - 1)) == []
    assert orjson.loads(demo_campaigns(_log(300))[0][1])["bid"]["per"] == "click"
