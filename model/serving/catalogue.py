"""The shop's catalogue: which items exist (public), and their titles as text vectors.

:class:`CatalogueItems` is the public part every worker keeps, text or not: item ids
and categories, the public domain over which popularity is released without a
threshold and from which a new shop's lists are filled (``model.serving.baseline``).

A :class:`TextCatalogue` holds one L2-normalised vector per item (from
:class:`model.serving.text.TextEncoder`), so a query vector's dot product with the
matrix is its cosine similarity to every title. Encoding is kept outside
(:meth:`add` takes vectors) so a worker can encode new titles off its event
loop and apply them on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]


class CatalogueItems:
    """Item id -> category (or None) of every catalogued item, in order of arrival.

    ``version`` changes with every change, so users can cache what they derive.

    Examples:
        >>> items = CatalogueItems()
        >>> items.update({"a": "shoes", "b": None, "c": "shoes"})
        >>> items.remove(["b", "zzz"])
        >>> len(items), items.ids, items.by_category()
        (2, ['a', 'c'], {'shoes': ['a', 'c']})
    """

    def __init__(self) -> None:
        self._category: dict[str, str | None] = {}
        self.version = 0

    def __len__(self) -> int:
        return len(self._category)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._category

    def __iter__(self) -> Iterator[str]:
        """Item ids in order of arrival, lazily (a fill may need only the first few)."""
        return iter(self._category)

    @property
    def ids(self) -> list[str]:
        """Item ids in order of arrival."""
        return list(self._category)

    def category(self, item_id: str) -> str | None:
        """The item's category; None when it has none or is not catalogued."""
        return self._category.get(item_id)

    def by_category(self) -> dict[str, list[str]]:
        """Category -> its items, in order of arrival (items without one left out)."""
        groups: dict[str, list[str]] = {}
        for item, category in self._category.items():
            if category is not None:
                groups.setdefault(category, []).append(item)
        return groups

    def update(self, categories: Mapping[str, str | None]) -> None:
        """Add items, or change their category."""
        if categories:
            self._category.update(categories)
            self.version += 1

    def remove(self, item_ids: Iterable[str]) -> None:
        """Drop items (unknown ids are ignored)."""
        removed = [self._category.pop(item, None) for item in item_ids if item in self._category]
        if removed:
            self.version += 1


class TextCatalogue:
    """Item id -> title vector, stored as one growing (N, D) float32 matrix.

    Examples:
        >>> catalogue = TextCatalogue(dim=2)
        >>> catalogue.add(["a", "b"], np.array([[1, 0], [0, 1]], dtype=np.float32))
        >>> catalogue.add(["a"], np.array([[0.6, 0.8]], dtype=np.float32))  # re-titled
        >>> len(catalogue), catalogue.ids
        (2, ['a', 'b'])
        >>> query = np.array([[0, 1]], dtype=np.float32)
        >>> [round(float(s), 2) for s in catalogue.similarities(query)[0]]
        [0.8, 1.0]
        >>> catalogue.remove(["a", "zzz"])
        >>> catalogue.ids, catalogue.matrix.tolist()
        (['b'], [[0.0, 1.0]])
    """

    def __init__(self, *, dim: int) -> None:
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        self._matrix = np.zeros((0, dim), dtype=np.float32)
        self._size = 0
        self._ids: list[str] = []
        self._rows: dict[str, int] = {}

    def __len__(self) -> int:
        """Number of items."""
        return self._size

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._rows

    @property
    def ids(self) -> list[str]:
        """Item ids in row order."""
        return self._ids

    @property
    def matrix(self) -> FloatArray:
        """``(N, D)`` float32 unit rows, in :attr:`ids` order (a view; do not modify)."""
        return self._matrix[: self._size]

    def add(self, item_ids: Sequence[str], vectors: FloatArray) -> None:
        """Insert or replace the vectors of ``item_ids`` (a later duplicate wins).

        Args:
            item_ids: ``B`` item ids.
            vectors: ``(B, D)`` L2-normalised rows, e.g. ``TextEncoder.encode_many(titles)``.
        """
        if vectors.shape != (len(item_ids), self._matrix.shape[1]):
            raise ValueError(f"vectors must have shape ({len(item_ids)}, {self._matrix.shape[1]})")
        for item_id, vector in zip(item_ids, vectors, strict=True):
            row = self._rows.get(item_id)
            if row is None:
                row = self._append_row(item_id)
            self._matrix[row] = vector

    def remove(self, item_ids: Iterable[str]) -> None:
        """Drop items (unknown ids are ignored); the last row moves into each gap."""
        for item_id in item_ids:
            row = self._rows.pop(item_id, None)
            if row is None:
                continue
            last = self._size - 1
            if row != last:
                moved = self._ids[last]
                self._matrix[row] = self._matrix[last]
                self._ids[row] = moved
                self._rows[moved] = row
            self._ids.pop()
            self._size = last

    def profile(self, item_ids: Sequence[str]) -> FloatArray | None:
        """Unit mean vector of the catalogued items among ``item_ids``; None if none are."""
        rows = [self._rows[item] for item in item_ids if item in self._rows]
        if not rows:
            return None
        mean = self._matrix[rows].mean(axis=0)
        norm = float(np.linalg.norm(mean))
        return (mean / norm).astype(np.float32) if norm > 0 else None

    def similarities(self, queries: FloatArray) -> FloatArray:
        """``(Q, D)`` unit query vectors -> ``(Q, N)`` cosine similarity to every item."""
        return queries @ self.matrix.T

    def similarity_rows(self, queries: FloatArray, *, chunk: int = 256) -> Iterator[FloatArray]:
        """The ``(N,)`` rows of :meth:`similarities`, computed ``chunk`` queries at a time.

        Peak memory is ``chunk x N`` floats instead of ``Q x N``: a batch of 2,000
        queries over 1,000,000 items would need 8 GB at once.
        """
        for start in range(0, len(queries), chunk):
            yield from self.similarities(queries[start : start + chunk])

    def _append_row(self, item_id: str) -> int:
        if self._size == self._matrix.shape[0]:
            grown = np.zeros((max(64, 2 * self._size), self._matrix.shape[1]), dtype=np.float32)
            grown[: self._size] = self._matrix[: self._size]
            self._matrix = grown
        row = self._size
        self._size += 1
        self._ids.append(item_id)
        self._rows[item_id] = row
        return row
