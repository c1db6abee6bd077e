"""Campaigns of sponsored items: parsed from ``shop.ads.campaigns`` and held by item.

Every worker holds every campaign (the campaign feed follows the whole compacted
topic); the auction asks :meth:`CampaignBook.in_list` for the campaigns of the
items of a shopper's ranked list, one dict read an item. A record that
does not parse is a :class:`~streams.pipeline.validation.Rejection` for the DLQ,
never an exception.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from streams.pipeline.validation import Reason, RecordValidator, Rejection

CAMPAIGN_SCHEMA = "schemas/campaign.schema.json"
#: Largest campaign record read: 1,000 item ids of 256 characters fit with room to spare.
MAX_CAMPAIGN_BYTES = 512 * 1024

#: What a bid pays for.
Per = Literal["click", "purchase"]


@dataclass(frozen=True, slots=True)
class Campaign:
    """One advertiser's offer to pay ``amount`` per click (or purchase) of its items.

    ``categories`` and ``keywords`` are None when the campaign does not target by
    them; keywords are lower-cased.
    """

    campaign_id: str
    advertiser: str
    items: tuple[str, ...]
    per: Per
    amount: float
    daily_budget: float
    start: float
    end: float | None
    categories: frozenset[str] | None = None
    keywords: tuple[str, ...] | None = None
    paused: bool = False

    def active(self, now: float) -> bool:
        """Whether it may be shown at ``now``: started, not ended, not paused."""
        return not self.paused and self.start <= now and (self.end is None or now < self.end)

    def matches(self, *, context: str, query: str | None, category: str | None) -> bool:
        """Whether its targeting admits an answer in ``context`` to an event of ``category``.

        Categories: the event's category must be one of them. Keywords: only search
        answers whose lower-cased query contains one of them.

        Examples:
            >>> shoes = Campaign("c1", "acme", ("i1",), "click", 0.4, 50.0, 0.0, None,
            ...                  categories=frozenset({"shoes"}), keywords=("running",))
            >>> shoes.matches(context="search", query="Running shoes", category="shoes")
            True
            >>> shoes.matches(context="browse", query=None, category="shoes")
            False
        """
        if self.categories is not None and category not in self.categories:
            return False
        if self.keywords is None:
            return True
        if context != "search" or query is None:
            return False
        lowered = query.lower()
        return any(keyword in lowered for keyword in self.keywords)


def parse_campaign(key: bytes | None, value: bytes | None) -> Campaign | Rejection:
    """The campaign a record of ``shop.ads.campaigns`` holds, or why it goes to the DLQ.

    A tombstone (no value) is not a campaign: the feed removes the key before asking.

    Examples:
        >>> value = (b'{"campaign_id":"c1","advertiser":"acme","items":["i1"],'
        ...          b'"bid":{"per":"click","amount":0.4},"daily_budget":50,'
        ...          b'"start":0,"end":null}')
        >>> parse_campaign(b"c1", value).amount
        0.4
        >>> parse_campaign(b"c2", value).reason
        <Reason.KEY_MISMATCH: 'key_mismatch'>
    """
    outcome = _validator()(value)
    if isinstance(outcome, Rejection):
        return outcome
    if key is None:
        return Rejection(Reason.KEY_MISMATCH, "record key (the campaign id) is missing")
    try:
        named = key.decode("utf-8")
    except UnicodeDecodeError:
        return Rejection(Reason.NOT_UTF8, "record key is not UTF-8")
    if named != outcome["campaign_id"]:
        return Rejection(Reason.KEY_MISMATCH, "record key is not the campaign's campaign_id")
    start, end = float(outcome["start"]), outcome["end"]
    if end is not None and end <= start:
        return Rejection(Reason.INVALID_VALUE, "end must be after start")
    targeting = outcome.get("targeting", {})
    categories = targeting.get("categories")
    keywords = targeting.get("keywords")
    return Campaign(
        campaign_id=named,
        advertiser=outcome["advertiser"],
        items=tuple(dict.fromkeys(outcome["items"])),
        per=outcome["bid"]["per"],
        amount=float(outcome["bid"]["amount"]),
        daily_budget=float(outcome["daily_budget"]),
        start=start,
        end=None if end is None else float(end),
        categories=None if categories is None else frozenset(categories),
        keywords=None if keywords is None else tuple(dict.fromkeys(k.lower() for k in keywords)),
        paused=outcome.get("status") == "paused",
    )


@functools.cache
def _validator() -> RecordValidator:
    """The campaign schema, compiled once per process."""
    return RecordValidator(max_bytes=MAX_CAMPAIGN_BYTES, schema=CAMPAIGN_SCHEMA)


class CampaignBook:
    """The campaigns a worker holds, indexed by item; at most ``max_campaigns``.

    Examples:
        >>> book = CampaignBook(max_campaigns=1)
        >>> book.upsert(Campaign("c1", "acme", ("i1", "i2"), "click", 0.4, 50.0, 0.0, None))
        True
        >>> [c.campaign_id for c in book.for_item("i2")], book.for_item("i3")
        (['c1'], ())
        >>> book.upsert(Campaign("c2", "acme", ("i1",), "click", 0.4, 50.0, 0.0, None))
        False
    """

    def __init__(self, *, max_campaigns: int) -> None:
        self._max = max_campaigns
        self._campaigns: dict[str, Campaign] = {}
        self._by_item: dict[str, tuple[Campaign, ...]] = {}

    def __len__(self) -> int:
        return len(self._campaigns)

    def __iter__(self) -> Iterator[Campaign]:
        return iter(list(self._campaigns.values()))

    def get(self, campaign_id: str) -> Campaign | None:
        """The campaign of that id, or None."""
        return self._campaigns.get(campaign_id)

    def for_item(self, item: str) -> tuple[Campaign, ...]:
        """The campaigns that sponsor ``item`` (``()`` for most items)."""
        return self._by_item.get(item, ())

    def in_list(
        self, ranked: Sequence[tuple[str, float]]
    ) -> list[tuple[int, str, float, tuple[Campaign, ...]]]:
        """``(rank, item, score, campaigns)`` of each listed item some campaign sponsors.

        One dict read per item of a deep list: most items have no campaign.
        """
        by_item = self._by_item
        return [
            (rank, item, score, by_item[item])
            for rank, (item, score) in enumerate(ranked)
            if item in by_item
        ]

    def upsert(self, campaign: Campaign) -> bool:
        """Add or replace a campaign; False (and nothing changes) when a new one finds it full."""
        cid = campaign.campaign_id
        if cid not in self._campaigns and len(self._campaigns) >= self._max:
            return False
        self.remove(cid)
        self._campaigns[cid] = campaign
        for item in campaign.items:
            self._by_item[item] = (*self._by_item.get(item, ()), campaign)
        return True

    def remove(self, campaign_id: str) -> None:
        """Forget a campaign (a tombstone); unknown ids are ignored."""
        old = self._campaigns.pop(campaign_id, None)
        if old is None:
            return
        for item in old.items:
            kept = tuple(c for c in self._by_item[item] if c.campaign_id != campaign_id)
            if kept:
                self._by_item[item] = kept
            else:
                del self._by_item[item]
