"""One answer's auction for its sponsored slots, and how the winners join the list.

Pure functions over candidates the ads stage has already found eligible (an
active, matching, paced, uncapped campaign for an item of the shopper's deep
ranked list, with a calibrated click probability over the relevance floor).
docs/ads.md states the rules for advertisers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from model.serving.scorers import ScoredItems
from streams.pipeline.ads.campaigns import Campaign

#: 0-based place of the first sponsored item (the 3rd), and the gap between two (3rd, 7th).
FIRST_SLOT = 2
SLOT_GAP = 4


class Candidate(NamedTuple):
    """A campaign's item in one shopper's list (a tuple: dozens are made an answer).

    ``p`` is the probability of what the bid pays for (a click or a purchase), and
    ``ev`` the bid times it: what showing the item is expected to earn.
    """

    campaign: Campaign
    item: str
    score: float
    p: float
    ev: float


@dataclass(frozen=True, slots=True)
class Winner:
    """A candidate given a slot, and its price per click (or per purchase)."""

    campaign: Campaign
    item: str
    score: float
    price: float


def run_auction(candidates: Sequence[Candidate], *, slots: int, reserve: float) -> list[Winner]:
    """Up to ``slots`` winners by expected value, of distinct items and campaigns.

    Generalised second price: a winner pays what it needs to keep its place, the EV
    of the best candidate of another campaign below it divided by its own ``p``, at
    least ``reserve`` and never more than its bid. The caller leaves out bids below
    ``reserve`` and candidates with ``p`` 0.

    Examples:
        >>> c = Campaign("c1", "a", ("i1",), "click", 1.0, 50.0, 0.0, None)
        >>> d = Campaign("c2", "a", ("i2",), "click", 0.5, 50.0, 0.0, None)
        >>> [w.price for w in run_auction(
        ...     [Candidate(c, "i1", 0.3, 0.1, 0.1), Candidate(d, "i2", 0.2, 0.1, 0.05)],
        ...     slots=1, reserve=0.01)]
        [0.5]
    """
    ranked = sorted(candidates, key=lambda c: (-c.ev, c.campaign.campaign_id, c.item))
    winners: list[Winner] = []
    items: set[str] = set()
    campaigns: set[str] = set()
    for place, candidate in enumerate(ranked):
        if len(winners) == slots:
            break
        campaign = candidate.campaign
        if candidate.item in items or campaign.campaign_id in campaigns:
            continue
        below = next(
            (o.ev for o in ranked[place + 1 :] if o.campaign.campaign_id != campaign.campaign_id),
            0.0,
        )
        price = min(campaign.amount, max(reserve, below / candidate.p))
        winners.append(Winner(campaign, candidate.item, candidate.score, price))
        items.add(candidate.item)
        campaigns.add(campaign.campaign_id)
    return winners


def blend(
    organic: ScoredItems, winners: Sequence[Winner], *, top_k: int
) -> tuple[ScoredItems, list[Winner]]:
    """The list with the winners in it, and the winners that made it into its ``top_k``.

    The i-th winner (by EV) takes the ``3 + 4 i``-th place (1-based), or the end of
    a shorter list; a sponsored item leaves its organic place, and the organic tail
    past ``top_k`` is cut. Each sponsored item keeps its model score.

    Examples:
        >>> c = Campaign("c1", "a", ("x",), "click", 1.0, 50.0, 0.0, None)
        >>> organic = [("a", 0.9), ("b", 0.8), ("x", 0.7), ("c", 0.6)]
        >>> blend(organic, [Winner(c, "x", 0.7, 0.1)], top_k=3)[0]
        [('a', 0.9), ('b', 0.8), ('x', 0.7)]
        >>> blend(organic[:1], [Winner(c, "x", 0.05, 0.1)], top_k=3)[0]
        [('a', 0.9), ('x', 0.05)]
    """
    sponsored = {winner.item for winner in winners}
    items = [pair for pair in organic if pair[0] not in sponsored]
    placed = []
    for index, winner in enumerate(winners):
        at = min(FIRST_SLOT + SLOT_GAP * index, len(items))
        if at >= top_k:
            break
        items.insert(at, (winner.item, winner.score))
        placed.append(winner)
    return items[:top_k], placed
