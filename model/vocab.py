"""The item vocabulary: item ids to the row indices of a model's item table."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


@dataclass
class ItemVocab:
    """Item id <-> index; index 0 is padding, so real items start at 1.

    Examples:
        >>> vocab = ItemVocab.build([["b", "a"], ["a", "c"]])
        >>> vocab.encode(["a", "c", "zzz"])
        [2, 3, 0]
        >>> vocab.ids[1:]
        ['b', 'a', 'c']
    """

    ids: list[str] = field(default_factory=lambda: [""])
    index: dict[str, int] = field(default_factory=dict)

    @classmethod
    def build(cls, sequences: Iterable[Sequence[str]]) -> ItemVocab:
        """Vocabulary of every item in ``sequences``, in order of first appearance."""
        vocab = cls()
        for sequence in sequences:
            vocab.add(sequence)
        return vocab

    def __len__(self) -> int:
        """Number of indices including padding."""
        return len(self.ids)

    def add(self, items: Iterable[str]) -> None:
        """Append the items not known yet, in order of first appearance.

        Known items keep their indices, so a model's rows stay valid for them.
        """
        for item in items:
            if item not in self.index:
                self.index[item] = len(self.ids)
                self.ids.append(item)

    def encode(self, items: Iterable[str]) -> list[int]:
        """Indices of ``items``; unknown items map to 0 (padding)."""
        return [self.index.get(item, 0) for item in items]
