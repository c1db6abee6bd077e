"""Learning from the stream: micro-batches of new sessions, mixed with a replay buffer.

:class:`IncrementalTrainer` collects training sequences as they complete a new
event (a session's items so far), and every ``update_every`` of them takes a few
gradient steps (``model.training.update.incremental_step``) on batches that are half new
sequences, half drawn from a bounded reservoir of older ones, so the model
follows the stream without forgetting what it knew.

Items new to the vocabulary get their own rows (``UpdateConfig.grow``): an item
first seen gets the next free index at once, so the sequences holding it are
kept, and at the next update, before its steps, the vocabulary and the item
table grow together (:func:`model.training.grow.grow_items`, which keeps Adam's moments).
Growing is thus batched, once per update, and the vocabulary never holds an item
whose row does not exist yet: :meth:`IncrementalTrainer.top_k` (or a checkpoint
released between updates) treats the items seen since the last update as
unknown. Past ``max_items`` rows new items are skipped, as they all are without
growing.

With ``privacy`` (:class:`model.training.update.OnlinePrivacy`) the updates are DP-SGD steps
(:class:`model.training.update.OnlineDPSGD`), protecting each session of the stream. Their
noise is calibrated to one row per session per step, so the trainer keeps a pool
(:class:`online_learning.pool.SessionPool`) of one sequence per session key (a longer
prefix replaces a shorter one) for ``UpdateConfig.pool_updates`` updates, every step
is a Poisson sample of the pool at the accounted rate, and there is no replay. A
step is taken only within the lifetime cap and, with ``windows``, the window's
share (:class:`online_learning.budget.SpendWindows`); once the cap is reached the
model is updated no more (examples are still counted). The schedule (an update
once ``update_every`` sessions have a new sequence) follows the stream's volume, which the
accounting treats as public. Growing is off: the vocabulary is released with the
model and would reveal, without noise, that some session held an item, which
DP-SGD's guarantee does not cover.

Every sequence may name its owner (a user pseudonym): :meth:`IncrementalTrainer.forget`
then drops the owner's pending and replayed sequences, and the new items only they
held, so an erased user is not learned from after the erasure.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from model.scorer import SequenceScorer
from model.serving.ranker import top_items
from model.training.dp_sgd import trained_parameters
from model.training.grow import grow_items
from model.training.update import AccountedSteps, OnlineDPSGD, OnlinePrivacy, incremental_step
from model.vocab import ItemVocab
from online_learning.budget import SpendWindows
from online_learning.pool import SessionPool

log = logging.getLogger(__name__)

#: A training sequence (item indices) and its owner (a user pseudonym, or None).
_Owned = tuple[str | None, list[int]]


@dataclass(frozen=True)
class UpdateConfig:
    """When and how the trainer updates.

    Attributes:
        update_every: new sequences between two updates.
        steps: gradient steps per update.
        batch_size: sequences per step, half new and half replayed when possible.
            With privacy, each step samples the pool and divides its noisy gradient
            sum by this fixed number (keep it near the sample rate times the pool).
        learning_rate: Adam's step size for the updates.
        negatives: sampled negatives per step (0 = full softmax); with privacy,
            ``OnlinePrivacy.negatives`` instead.
        replay_capacity: most sequences kept in the reservoir.
        seed: seeds the reservoir, the negatives and new items' rows; not the DP noise
            (OS entropy).
        grow: give items new to the vocabulary their own rows (module docstring);
            None: on without privacy, off with it (True with privacy is an error).
        max_items: most rows of the item table, padding included; once it is full,
            new items are skipped (a stream of junk ids cannot exhaust memory).
        pool_updates: with privacy, updates a session stays in the pool after its
            latest sequence.
    """

    update_every: int = 256
    steps: int = 4
    batch_size: int = 128
    learning_rate: float = 1e-3
    negatives: int = 0
    replay_capacity: int = 20_000
    seed: int = 0
    grow: bool | None = None
    max_items: int = 1_000_000
    pool_updates: int = 1

    def __post_init__(self) -> None:
        counts = (self.update_every, self.steps, self.batch_size, self.replay_capacity)
        if min(*counts, self.pool_updates) < 1:
            raise ValueError(
                "update_every, steps, batch_size, replay_capacity and pool_updates must be >= 1"
            )
        if self.max_items < 2:
            raise ValueError("max_items must include padding and at least one item")
        if not self.learning_rate > 0 or self.negatives < 0:
            raise ValueError("learning_rate must be > 0 and negatives >= 0")


class IncrementalTrainer:
    """Updates ``model`` in place from sequences observed one by one.

    Args:
        model: the scorer, updated in place and left in eval mode between updates.
        vocab: its item vocabulary; with growing, new items are added to it in
            place at each update (the trainer must be its only writer).
        config: when and how to update.
        replay: older sequences (item indices) to seed the reservoir; not with privacy.
        privacy: update with DP-SGD within this budget (see the module docstring).
        history: with privacy, the accountant history of the model's lineage so far
            (``OnlineDPSGD``'s ``prior``).
        windows: with privacy, the most epsilon the lineage may gain per time window.

    Raises:
        ValueError: ``replay`` with ``privacy``, or ``config.grow`` with ``privacy``.

    Examples:
        >>> from model.config import ScorerConfig
        >>> vocab = ItemVocab.build([["a", "b", "c"]])
        >>> model = SequenceScorer(ScorerConfig(n_items=4, d_model=8, n_heads=2)).eval()
        >>> fixed = UpdateConfig(update_every=2, grow=False)
        >>> trainer = IncrementalTrainer(model, vocab, config=fixed)
        >>> trainer.observe(["a", "b"]), trainer.observe(["b", "zzz"])
        (False, False)
        >>> trainer.observe(["b", "c"])
        True
        >>> trainer.updates, trainer.examples
        (1, 2)

        Growing (the default without privacy), a new item is known from the next update:

        >>> trainer = IncrementalTrainer(model, vocab, config=UpdateConfig(update_every=2))
        >>> trainer.observe(["a", "new"]), trainer.top_k([["new"]], k=3), len(vocab)
        (False, [[]], 4)
        >>> trainer.observe(["new", "b"])
        True
        >>> len(vocab), model.config.n_items, len(trainer.top_k([["new"]], k=3)[0])
        (5, 5, 3)
    """

    def __init__(
        self,
        model: SequenceScorer,
        vocab: ItemVocab,
        *,
        config: UpdateConfig,
        replay: Sequence[Sequence[int]] = (),
        privacy: OnlinePrivacy | None = None,
        history: Sequence[AccountedSteps] = (),
        windows: SpendWindows | None = None,
    ) -> None:
        if privacy is not None and replay:
            raise ValueError("no replay with privacy: it would repeat sessions within a step")
        if privacy is not None and config.grow:
            raise ValueError(
                "no growing with privacy: the vocabulary would reveal that a session held an item"
            )
        self.model = model
        self._vocab = vocab
        self._config = config
        self._optimizer = torch.optim.Adam(
            model.parameters() if privacy is None else trained_parameters(model),
            lr=config.learning_rate,
        )
        self._dp = (
            None
            if privacy is None
            else OnlineDPSGD(
                model, self._optimizer, privacy, batch_size=config.batch_size, prior=history
            )
        )
        self._windows = windows
        #: The window whose share was found spent (logged once per window).
        self._window_full = -1
        self._pool = SessionPool(lifetime=config.pool_updates)
        self._generator = torch.Generator().manual_seed(config.seed)
        self._random = random.Random(config.seed)
        # Without privacy, every new sequence by arrival, with its owner (for forget).
        self._pending: dict[int, _Owned] = {}
        self._reservoir: list[_Owned] = []
        self._seen = 0
        self._growing = privacy is None if config.grow is None else config.grow
        #: Items first seen since the last update, with the indices they will have.
        self._fresh: dict[str, int] = {}
        self._full = False
        for sequence in replay:
            self._remember((None, list(sequence)))
        self.examples = 0
        self.updates = 0
        #: Mean loss of the last update; stays NaN with privacy (it is computed before
        #: the noise, so publishing it would not be covered by the guarantee).
        self.last_loss = float("nan")
        #: New sequences between updates; a caller may shorten it (e.g. on drift).
        self.update_every = config.update_every

    def observe(
        self, items: Sequence[str], *, key: str | None = None, owner: str | None = None
    ) -> bool:
        """Add one training sequence (oldest item first); True when it triggered an update.

        Args:
            items: the session's item ids so far.
            key: the session's key; required with privacy, where a later sequence of
                the same session replaces its pending one. Ignored without privacy.
            owner: whose sequence it is, for :meth:`forget` (None: nobody's to forget).

        Raises:
            ValueError: privacy is on and ``key`` is None.
        """
        if self._dp is not None and key is None:
            raise ValueError("with privacy, observe needs the session key")
        encoded = [index for index in self._encode(items) if index]
        if len(encoded) < 2:
            return False
        self.examples += 1
        if self._dp is None:
            self._pending[self.examples] = (owner, encoded)
        elif self._dp.exhausted:
            return False
        else:
            self._pool.add(str(key), encoded, owner=owner)
        if max(len(self._pending), self._pool.new) < self.update_every:
            return False
        self.update()
        return True

    def forget(self, owners: Collection[str]) -> int:
        """Drop every pending and replayed sequence of ``owners``; returns how many.

        Items first seen in those sequences alone are dropped too (the others keep
        their order and get renumbered), so no update after this learns from them.
        One pass over the buffers, however many owners.
        """
        gone = set(owners)
        before = len(self._pending) + len(self._reservoir)
        self._pending = {k: row for k, row in self._pending.items() if row[0] not in gone}
        self._reservoir = [row for row in self._reservoir if row[0] not in gone]
        self._drop_unused_fresh()
        return before - len(self._pending) - len(self._reservoir) + self._pool.forget(gone)

    def top_k(self, prefixes: Sequence[Sequence[str]], *, k: int) -> list[list[str]]:
        """The current model's top-``k`` item ids per prefix (``[]`` when it knows none)."""
        return top_items(self.model, self._vocab, prefixes, k=k)

    def update(self) -> None:
        """Take ``steps`` gradient steps on the pending sequences and replayed ones, or DP steps.

        Items first seen since the last update join the vocabulary and get their
        rows first.
        """
        self._add_fresh_items()
        if self._dp is None:
            self._update_plain(list(self._pending.values()))
            self._pending = {}
        else:
            self._update_private(self._dp, self._pool.rows())
            self._pool.age()

    @property
    def learning(self) -> bool:
        """False once the DP lifetime cap is reached: the model is updated no more."""
        return self._dp is None or not self._dp.exhausted

    @property
    def dp_steps(self) -> int:
        """DP steps this trainer took (0 without privacy)."""
        return 0 if self._dp is None else self._dp.steps

    def privacy_spent(self) -> dict[str, Any] | None:
        """The lineage's spend so far and the DP settings (``OnlineDPSGD.spent``); None without.

        With ``windows``, ``window`` holds their state.
        """
        if self._dp is None:
            return None
        spent = self._dp.spent()
        if self._windows is not None:
            spent["window"] = self._windows.state()
        return spent

    def _encode(self, items: Sequence[str]) -> list[int]:
        """Indices of ``items``: 0 when unknown, or when growing, the index it will have."""
        if not self._growing:
            return self._vocab.encode(items)
        known = self._vocab.index
        return [known.get(item) or self._fresh_index(item) for item in items]

    def _fresh_index(self, item: str) -> int:
        """The index a new item gets at the next update; 0 once the table is full."""
        index = self._fresh.get(item)
        if index is not None:
            return index
        index = len(self._vocab) + len(self._fresh)
        if index >= self._config.max_items:
            if not self._full:
                self._full = True
                log.warning(
                    "the item table is full (max_items %d): new items are skipped from now on",
                    self._config.max_items,
                )
            return 0
        self._fresh[item] = index
        return index

    def _drop_unused_fresh(self) -> None:
        """Forget fresh items no pending sequence holds; renumber the rest from the table's end."""
        used = {index for _, sequence in self._pending.values() for index in sequence}
        kept = [item for item, index in self._fresh.items() if index in used]
        if len(kept) == len(self._fresh):
            return
        base = len(self._vocab)
        renumber = {self._fresh[item]: base + n for n, item in enumerate(kept)}
        self._fresh = {item: base + n for n, item in enumerate(kept)}
        self._pending = {
            key: (owner, [renumber.get(index, index) for index in sequence])
            for key, (owner, sequence) in self._pending.items()
        }

    def _add_fresh_items(self) -> None:
        """Add the items first seen since the last update to the vocabulary and the table.

        Together, so the vocabulary never names an item without a row (``top_items``
        maps scores back through ``vocab.ids``); ``_fresh`` kept their insertion order,
        which is the order of the indices ``_fresh_index`` gave them.
        """
        if not self._fresh:
            return
        self._vocab.add(self._fresh)
        self._fresh = {}
        rows = max(self.model.config.n_items, len(self._vocab))
        grow_items(self.model, self._optimizer, rows, generator=self._generator)

    def _update_plain(self, new: list[_Owned]) -> None:
        """``steps`` steps on batches half new, half replayed; then ``new`` joins the reservoir."""
        config = self._config
        losses = []
        for _ in range(config.steps):
            half = config.batch_size // 2
            batch = self._random.sample(new, min(len(new), half))
            room = config.batch_size - len(batch)
            batch += self._random.sample(self._reservoir, min(len(self._reservoir), room))
            losses.append(
                incremental_step(
                    self.model,
                    self._optimizer,
                    [sequence for _, sequence in batch],
                    negatives=config.negatives,
                    generator=self._generator,
                )
            )
        for row in new:
            self._remember(row)
        self.updates += 1
        self.last_loss = sum(losses) / len(losses)

    def _update_private(self, dp: OnlineDPSGD, pool: list[list[int]]) -> None:
        """``steps`` DP steps, each a Poisson sample of ``pool``, within the cap and the window."""
        if not pool or dp.exhausted:
            return
        taken = 0
        for _ in range(self._config.steps):
            if not self._window_allows(dp):
                break
            if dp.step(pool) is None:
                spent = dp.spent()
                log.warning(
                    "the lineage's lifetime privacy budget is spent (epsilon %.3g of %.3g after "
                    "%d steps): the model is updated no more",
                    spent["epsilon"],
                    spent["budget"],
                    spent["steps"],
                )
                break
            taken += 1
        if taken:
            self.updates += 1

    def _window_allows(self, dp: OnlineDPSGD) -> bool:
        """Whether this window's share has room for one more step (logged once when not)."""
        windows = self._windows
        if windows is None or windows.allows(spent=dp.epsilon_after(0), after=dp.epsilon_after(1)):
            return True
        if windows.index != self._window_full:
            self._window_full = windows.index
            log.warning(
                "this window's privacy budget is spent (epsilon %.3g per %.0f s): "
                "no update until the next window",
                windows.epsilon,
                windows.seconds,
            )
        return False

    def _remember(self, row: _Owned) -> None:
        """Reservoir sampling: every sequence seen is kept with equal probability."""
        self._seen += 1
        if len(self._reservoir) < self._config.replay_capacity:
            self._reservoir.append(row)
            return
        slot = self._random.randrange(self._seen)
        if slot < self._config.replay_capacity:
            self._reservoir[slot] = row
