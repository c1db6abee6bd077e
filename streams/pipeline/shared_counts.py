"""What the stream teaches everyone's recommendations, learned only through DP releases.

The baseline recommender's popularity and item-to-next-item counts, and the
purchase counts per intent cell (which teach both the purchase rate per event
type and the river intent model), are aggregates over many users that every
recommendation reveals a little of (DESIGN.md privacy model). So a worker does
not learn them event by event: per tumbling window of event time each user
contributes at most ``max_items`` distinct items (each with the transition into
it, from their previous item) and counts once towards the purchase counts, and is
charged ``epsilon`` from their per-window budget for it
(:class:`~streams.pipeline.dp.ContributionBound`). When the stream's event time
passes the end of a window, that window's counts are released once with
OpenDP's threshold mechanism (:class:`~model.threshold.ThresholdCounts`,
(epsilon, delta)-DP per user and window) and only then learned by the baseline.

Once the shop's catalogue is known (it is public: ``shop.items``), item popularity
needs no threshold: a window that opens with a catalogue releases the popularity
of every catalogued item, noisy, even at 0, with OpenDP's discrete Laplace over
the catalogue (:func:`~model.threshold.release_public_counts`); items outside the
catalogue add no popularity then. The two parts share the window's epsilon in
proportion to the keys a user adds to each (``max_items`` items; ``max_items``
transitions and one purchase-rate key) at the same noise scale as before, so a
user's loss per window is unchanged: a new shop gets full lists from its first
window at no extra privacy cost.
A user whose budget is spent contributes nothing more until the next window.

Two things make the bounds hold across erasures, restarts and rebalances. A
user's spend is also kept in their ledger (:mod:`streams.pipeline.ledger`), which
outlives their state: :meth:`SharedCounts.restore` gives a state that was erased
or failed to open the ledger's spend, with the window's contributions used up.
And each release marks, per input partition that contributed, the windows it
closed (:attr:`SharedCounts.new_marks`); the worker makes the marks durable before
anything learned from the release leaves it, and feeds them back
(:meth:`SharedCounts.note_released`), so events redelivered after a crash or on
another worker cannot add to a window that was already released.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from model.serving.baseline import CooccurrenceRecommender, NextPurchaseRate
from model.serving.catalogue import CatalogueItems
from model.threshold import IntArray, ThresholdCounts, release_public_counts, split_epsilon
from online_learning.intent import CellIntent
from streams.pipeline.dp import ContributionBound, PrivacyBudget
from streams.pipeline.ledger import UserLedger
from streams.pipeline.state import UserState

log = logging.getLogger(__name__)

SEP = "\x1f"
#: The pseudo-item a user's one purchase-rate contribution per window is admitted as.
INTENT_SLOT = "\x00intent"
#: Stands for a contribution made before a state was lost: content-free, never an item.
USED_SLOT = "\x00used"


@dataclass(frozen=True)
class SharingConfig:
    """Privacy parameters of the shared counts (from :class:`~streams.settings.Settings`).

    Attributes:
        budget_epsilon: each user's epsilon per window, for everything released.
        epsilon: charged per window to a user who contributes to the shared counts.
        delta: the threshold mechanism's delta per window.
        max_items: distinct items (with their transitions) one user adds per window.
        window_seconds: window length in event-time seconds.
    """

    budget_epsilon: float
    epsilon: float
    delta: float
    max_items: int
    window_seconds: float

    @property
    def max_keys(self) -> int:
        """Keys one user adds to per window: items, transitions, one purchase-rate key."""
        return 2 * self.max_items + 1

    def epsilons(self) -> tuple[float, float]:
        """(catalogue popularity, everything else): a window's epsilon split by their keys."""
        return split_epsilon(self.epsilon, Fraction(self.max_items, self.max_keys))


@dataclass
class _Window:
    """One open window's contributions: thresholded keys, and with a catalogue the
    catalogued items' popularity."""

    counts: ThresholdCounts
    items: Counter[str] | None


class SharedCounts:
    """Collects bounded contributions per window and teaches the baseline their release."""

    def __init__(
        self,
        config: SharingConfig,
        *,
        recommender: CooccurrenceRecommender,
        intent: NextPurchaseRate,
        cell_intent: CellIntent,
        catalogue: CatalogueItems | None = None,
    ) -> None:
        self.config = config
        self._catalogue = catalogue if catalogue is not None else CatalogueItems()
        self._recommender = recommender
        self._intent = intent
        self._cell_intent = cell_intent
        self._windows: dict[float, _Window] = {}
        #: The start of the oldest open window (inf: none); asked once an event.
        self._oldest = float("inf")
        #: Input partitions whose events added to each open window.
        self._window_partitions: dict[float, set[int]] = {}
        self._released_before = float("-inf")
        #: Durable release marks: input partition -> windows before this are released.
        self._marks: dict[int, float] = {}
        #: Marks made by releases since the caller last took them.
        self.new_marks: dict[int, float] = {}
        self._limit_units = PrivacyBudget(
            limit_epsilon=config.budget_epsilon, window_seconds=config.window_seconds
        ).limit_units
        self.released_windows = 0
        self.dropped = 0
        #: Epsilon charged to users so far, in micro-epsilons (``streams.pipeline.dp.MICRO``).
        self.charged_units = 0
        #: Contributions refused because the user's budget for the window was spent.
        self.refused = 0
        self._releases = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dp-popularity")
        #: Popularity releases under way, in window order: the items and their noisy counts.
        self._pending: deque[tuple[list[str], Future[IntArray]]] = deque()

    def note_released(self, marks: dict[int, float]) -> None:
        """Adopt durable release marks (input partition -> windows before it are released)."""
        for partition, before in marks.items():
            if before > self._marks.get(partition, float("-inf")):
                self._marks[partition] = before

    def restore(self, state: UserState, ledger: UserLedger | None, now: float) -> None:
        """Bring a just-opened ``state`` up to the spend its ledger recorded.

        A state that was erased, expired or failed to open starts empty; the ledger
        still knows the window the user was charged in. The budget is taken from it
        and that window's contributions count as used, so the user cannot add to it
        again. An unreadable ledger (``None``) spends the whole budget of the window
        of ``now``.
        """
        if ledger is None:
            window = now - now % self.config.window_seconds
            spent = self._limit_units
        else:
            window, spent = ledger.window_start, ledger.spent_units
        if spent <= 0:
            return
        current_window, current_spent = state.privacy_budget
        if (float(current_window), int(current_spent)) >= (window, spent):
            return
        state.privacy_budget = [window, spent]
        state.contributions = [window, [f"{USED_SLOT}{i}" for i in range(self.config.max_items)]]

    def contribute(
        self,
        state: UserState,
        *,
        item: str | None,
        previous_item: str | None,
        previous_cell: str | None,
        current_type: int,
        now: float,
        partition: int,
    ) -> None:
        """Add one event's contribution, within the user's bound and budget (updates ``state``).

        ``partition`` is the event's input partition, whose release marks apply.
        """
        config = self.config
        budget = PrivacyBudget.from_list(
            state.privacy_budget,
            limit_epsilon=config.budget_epsilon,
            window_seconds=config.window_seconds,
        )
        bound = ContributionBound.from_list(
            state.contributions, max_items=config.max_items, window_seconds=config.window_seconds
        )
        window, spent_before = budget.window_start, budget.spent_units
        first_in_window = not bound.items or now - now % config.window_seconds > bound.window_start
        keys = []
        counted = item is not None and bound.admit(
            item, now=now, budget=budget, epsilon=config.epsilon
        )
        if counted and previous_item is not None:
            keys.append(f"p{SEP}{previous_item}{SEP}{item}")
        admit_intent = previous_cell is not None and bound.admit(
            INTENT_SLOT, now=now, budget=budget, epsilon=config.epsilon
        )
        if admit_intent:
            purchased = int(current_type == self._intent.purchase_type)
            keys.append(f"t{SEP}{previous_cell}{SEP}{purchased}")
        state.privacy_budget, state.contributions = budget.to_list(), bound.to_list()
        charged = budget.spent_units - (spent_before if budget.window_start == window else 0)
        self.charged_units += charged
        asked = item is not None or previous_cell is not None
        if asked and first_in_window and not charged:
            self.refused += 1
        if not keys and not counted:
            return
        released_before = max(self._released_before, self._marks.get(partition, float("-inf")))
        if bound.window_start < released_before:
            self.dropped += len(keys) + counted  # a late or redelivered event, released window
            return
        open_window = self._windows.get(bound.window_start) or self._open(bound.window_start)
        self._window_partitions[bound.window_start].add(partition)
        for key in keys:
            open_window.counts.add(key)
        if counted and item is not None:
            self._count_item(open_window, item)

    def _count_item(self, window: _Window, item: str) -> None:
        """Add one to ``item``'s popularity: thresholded, or in the catalogue's part."""
        if window.items is None:
            window.counts.add(f"i{SEP}{item}")
        elif item in self._catalogue:
            window.items[item] += 1

    def _open(self, start: float) -> _Window:
        """A new window: with the catalogue's popularity part if a catalogue is known now.

        Decided once per window, so a user adds to the threshold part no more keys than
        its release was certified for.
        """
        public = len(self._catalogue) > 0
        max_keys = self.config.max_items + 1 if public else self.config.max_keys
        window = self._windows[start] = _Window(
            ThresholdCounts(max_keys=max_keys), Counter() if public else None
        )
        self._oldest = min(self._oldest, start)
        self._window_partitions[start] = set()
        return window

    def due(self, now: float) -> bool:
        """Whether :meth:`advance` at event time ``now`` would release (and teach) anything."""
        current = now - now % self.config.window_seconds
        return self._oldest < current

    def advance(self, now: float) -> int:
        """Release every window that ended at or before event time ``now``; keys learned."""
        current = now - now % self.config.window_seconds
        self._released_before = max(self._released_before, current)
        learned = 0
        for start in sorted(start for start in self._windows if start < current):
            for partition in self._window_partitions.pop(start):
                self._marks[partition] = self.new_marks[partition] = current
            learned += self._release(self._windows.pop(start))
            self.released_windows += 1
        self._oldest = min(self._windows, default=float("inf"))
        return learned

    def _release(self, window: _Window) -> int:
        """Release one window's counts once and teach them; how many counts were learned."""
        if window.items is None:
            released = window.counts.release(epsilon=self.config.epsilon, delta=self.config.delta)
            self._learn(released, {})
            return len(released)
        popularity_epsilon, rest_epsilon = self.config.epsilons()
        released = window.counts.release(epsilon=rest_epsilon, delta=self.config.delta)
        self._learn(released, {})
        items = self._catalogue.ids
        counts = np.fromiter((window.items.get(item, 0) for item in items), np.int64, len(items))
        noisy = self._releases.submit(
            release_public_counts,
            counts,
            max_keys=self.config.max_items,
            epsilon=popularity_epsilon,
        )
        self._pending.append((items, noisy))
        return len(released)

    def learn_finished(self, *, wait: bool = False) -> int:
        """Teach the catalogue popularity releases that are done, in window order (with
        ``wait``, all of them, waiting); how many item counts were learned.

        A release that failed is logged and lost: its window is marked released
        already, so it is never released again.
        """
        learned = 0
        while self._pending and (wait or self._pending[0][1].done()):
            items, noisy = self._pending.popleft()
            try:
                counts = noisy.result()
            except Exception:
                log.exception("a popularity release failed: that window's popularity is lost")
                continue
            self._recommender.learn_counts(dict(zip(items, counts.tolist(), strict=True)), {})
            learned += len(items)
        return learned

    def _learn(self, released: dict[str, int], popularity: dict[str, int]) -> None:
        """Teach the released counts (and the catalogue's released popularity)."""
        transitions: dict[tuple[str, str], int] = {}
        cells: list[tuple[str, bool, int]] = []
        for key, count in released.items():
            kind, *parts = key.split(SEP)
            if kind == "i":
                popularity[parts[0]] = count
            elif kind == "p":
                transitions[(parts[0], parts[1])] = count
            else:
                cell, purchased = parts[0], bool(int(parts[1]))
                last_type = int(cell.split(".")[0])
                self._intent.learn_counts(last_type, purchases=purchased, count=count)
                cells.append((cell, purchased, count))
        self._recommender.learn_counts(popularity, transitions)
        self._cell_intent.learn_released(cells)
