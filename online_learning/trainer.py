"""Learning from the stream: micro-batches of new sessions, mixed with a replay buffer.

:class:`IncrementalTrainer` collects training sequences as they complete a new
event (a session's items so far), and every ``update_every`` of them takes a few
gradient steps (``model.update.incremental_step``) on batches that are half new
sequences, half drawn from a bounded reservoir of older ones, so the model
follows the stream without forgetting what it knew. Items the model's vocabulary
does not have are skipped (its item table has a fixed size).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from model.scorer import SequenceScorer
from model.serving import top_items
from model.sessions import ItemVocab
from model.update import incremental_step


@dataclass(frozen=True)
class UpdateConfig:
    """When and how the trainer updates.

    Attributes:
        update_every: new sequences between two updates.
        steps: gradient steps per update.
        batch_size: sequences per step, half new and half replayed when possible.
        learning_rate: Adam's step size for the updates.
        negatives: sampled negatives per step (0 = full softmax).
        replay_capacity: most sequences kept in the reservoir.
        seed: seeds the reservoir and the negatives.
    """

    update_every: int = 256
    steps: int = 4
    batch_size: int = 128
    learning_rate: float = 1e-3
    negatives: int = 0
    replay_capacity: int = 20_000
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.update_every, self.steps, self.batch_size, self.replay_capacity) < 1:
            raise ValueError("update_every, steps, batch_size and replay_capacity must be >= 1")
        if not self.learning_rate > 0 or self.negatives < 0:
            raise ValueError("learning_rate must be > 0 and negatives >= 0")


class IncrementalTrainer:
    """Updates ``model`` in place from sequences observed one by one.

    Examples:
        >>> from model.config import ScorerConfig
        >>> vocab = ItemVocab.build([["a", "b", "c"]])
        >>> model = SequenceScorer(ScorerConfig(n_items=4, d_model=8, n_heads=2)).eval()
        >>> trainer = IncrementalTrainer(model, vocab, config=UpdateConfig(update_every=2))
        >>> trainer.observe(["a", "b"]), trainer.observe(["b", "zzz"])
        (False, False)
        >>> trainer.observe(["b", "c"])
        True
        >>> trainer.updates, trainer.examples
        (1, 2)
    """

    def __init__(
        self,
        model: SequenceScorer,
        vocab: ItemVocab,
        *,
        config: UpdateConfig,
        replay: Sequence[Sequence[int]] = (),
    ) -> None:
        self.model = model
        self._vocab = vocab
        self._config = config
        self._optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
        self._generator = torch.Generator().manual_seed(config.seed)
        self._random = random.Random(config.seed)
        self._pending: list[list[int]] = []
        self._reservoir: list[list[int]] = []
        self._seen = 0
        for sequence in replay:
            self._remember(list(sequence))
        self.examples = 0
        self.updates = 0
        self.last_loss = float("nan")
        #: New sequences between updates; a caller may shorten it (e.g. on drift).
        self.update_every = config.update_every

    def observe(self, items: Sequence[str]) -> bool:
        """Add one training sequence (oldest item first); True when it triggered an update."""
        encoded = [index for index in self._vocab.encode(items) if index]
        if len(encoded) < 2:
            return False
        self._pending.append(encoded)
        self.examples += 1
        if len(self._pending) < self.update_every:
            return False
        self.update()
        return True

    def top_k(self, prefixes: Sequence[Sequence[str]], *, k: int) -> list[list[str]]:
        """The current model's top-``k`` item ids per prefix (``[]`` when it knows none)."""
        return top_items(self.model, self._vocab, prefixes, k=k)

    def update(self) -> None:
        """Take ``steps`` gradient steps on the pending sequences and replayed ones."""
        config, new = self._config, self._pending
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
                    batch,
                    negatives=config.negatives,
                    generator=self._generator,
                )
            )
        for sequence in new:
            self._remember(sequence)
        self._pending = []
        self.updates += 1
        self.last_loss = sum(losses) / len(losses)

    def _remember(self, sequence: list[int]) -> None:
        """Reservoir sampling: every sequence seen is kept with equal probability."""
        self._seen += 1
        if len(self._reservoir) < self._config.replay_capacity:
            self._reservoir.append(sequence)
            return
        slot = self._random.randrange(self._seen)
        if slot < self._config.replay_capacity:
            self._reservoir[slot] = sequence
