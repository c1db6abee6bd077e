"""What a checkpoint adds to its transformer to rank: mixing weights and a neighbour index.

Stored beside the weights as ``ranker.npz`` (numpy arrays only, read without
pickle): the training sessions' item sets as a CSR matrix in the checkpoint's item
indices (the session-kNN index) and a JSON document of the settings. Both the
worker and ``intentstream evaluate`` build their ranker from it
(:func:`model.ranking.ranker.served_ranker`).
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

#: File name of the parts inside a checkpoint or model version folder.
RANKER_FILE = "ranker.npz"


@dataclass(frozen=True)
class FusionWeights:
    """Weights of the transformer, session-kNN and recent-items distributions (sum 1).

    Examples:
        >>> FusionWeights.mix(transformer=0.5, recent=0.2)
        FusionWeights(transformer=0.4, neighbours=0.4, recent=0.2)
    """

    transformer: float = 1.0
    neighbours: float = 0.0
    recent: float = 0.0

    def __post_init__(self) -> None:
        values = (self.transformer, self.neighbours, self.recent)
        if not all(math.isfinite(v) and v >= 0 for v in values) or not sum(values) > 0:
            raise ValueError(f"fusion weights must be finite, >= 0 and not all 0: {values}")

    @classmethod
    def mix(cls, *, transformer: float, recent: float) -> FusionWeights:
        """``transformer`` against kNN, then ``recent`` for the recent items (rounded)."""
        return cls(
            transformer=round(transformer * (1 - recent), 6),
            neighbours=round((1 - transformer) * (1 - recent), 6),
            recent=round(recent, 6),
        )


@dataclass(frozen=True)
class CandidateBudget:
    """How many candidates each source of the candidate stage proposes per history.

    The history's own items always join; 100 / 100 / 50 keep 81 % of Diginetica's
    test targets in about 185 candidates (``bench/candidates.py``).

    Attributes:
        neighbours: session-kNN's top items.
        nearest: the items nearest the transformer's query (approximate index).
        popular: the most popular training items.
    """

    neighbours: int = 100
    nearest: int = 100
    popular: int = 50

    def __post_init__(self) -> None:
        if min(self.neighbours, self.nearest, self.popular) < 0 or self.nearest < 1:
            raise ValueError(f"candidate counts must be >= 0 and nearest >= 1: {self}")

    @property
    def total(self) -> int:
        """Candidates proposed besides the history's own items, before duplicates go."""
        return self.neighbours + self.nearest + self.popular


@dataclass(frozen=True)
class RankerParts:
    """The non-transformer parts of the served ranker and how much each weighs.

    Attributes:
        weights: the mix, chosen on the validation split.
        sessions: ``(S, N)`` binary CSR item sets of the training sessions (the
            kNN index, N = the checkpoint's vocabulary); None without a kNN part.
        transitions: ``(N, N)`` CSR of a DP release of which items sessions hold
            near which (:mod:`model.training.transitions`): a private checkpoint's
            memory part in place of ``sessions``.
        k: neighbours per prefix (V-SKNN).
        recent_decay: weight ``decay ** distance`` of an item seen in the history.
        candidates: the candidate stage's budget (two-stage serving).
        validation: the validation metrics of the chosen mix (for reports).
    """

    weights: FusionWeights
    sessions: sp.csr_matrix | None = None
    transitions: sp.csr_matrix | None = None
    k: int = 100
    recent_decay: float = 0.5
    candidates: CandidateBudget = CandidateBudget()
    validation: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.k < 1 or not 0 < self.recent_decay <= 1:
            raise ValueError("k must be >= 1 and recent_decay in (0, 1]")
        if self.sessions is not None and self.transitions is not None:
            raise ValueError("a ranker keeps the sessions' index or released transitions, not both")
        if self.weights.neighbours > 0 and self.sessions is None and self.transitions is None:
            raise ValueError("a kNN weight needs the sessions' index or released transitions")

    def popular_items(self) -> np.ndarray:
        """Item indices by the number of training sessions holding them, most first.

        From released transitions: by their summed counts. Empty without either.
        """
        if self.transitions is not None:
            holding = np.asarray(self.transitions.sum(axis=0), dtype=np.float64).ravel()
        elif self.sessions is not None:
            holding = np.asarray(self.sessions.getnnz(axis=0), dtype=np.float64)
        else:
            return np.zeros(0, dtype=np.int64)
        holding[0] = -1  # padding last
        order = np.argsort(-holding, kind="stable")
        return order[holding[order] > 0].astype(np.int64)

    def to_bytes(self) -> bytes:
        """The ``ranker.npz`` bytes."""
        settings = {
            "weights": asdict(self.weights),
            "k": self.k,
            "recent_decay": self.recent_decay,
            "candidates": asdict(self.candidates),
            "validation": self.validation,
        }
        arrays: dict[str, Any] = {
            "settings": np.frombuffer(json.dumps(settings, sort_keys=True).encode(), np.uint8)
        }
        if self.sessions is not None:
            matrix = self.sessions.tocsr()
            arrays |= {
                "indptr": matrix.indptr.astype(np.int64),
                "indices": matrix.indices.astype(np.int32),
                "shape": np.asarray(matrix.shape, dtype=np.int64),
            }
        if self.transitions is not None:
            released = self.transitions.tocsr()
            arrays |= {
                "transitions_indptr": released.indptr.astype(np.int64),
                "transitions_indices": released.indices.astype(np.int32),
                "transitions_data": released.data.astype(np.float32),
            }
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, *, n_items: int) -> RankerParts:
        """Parse ``ranker.npz`` for a model of ``n_items`` indices (its index may have fewer).

        Raises:
            ValueError: not a ranker file, or its index does not fit the model.
        """
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
                settings = json.loads(arrays["settings"].tobytes())
                sessions = None
                if "indptr" in arrays:
                    indptr, indices = arrays["indptr"], arrays["indices"]
                    rows, columns = (int(v) for v in arrays["shape"])
                    if columns > n_items or indptr.size != rows + 1:
                        raise ValueError(f"its index has {columns} items, the model {n_items}")
                    if indices.size and (indices.min() < 1 or indices.max() >= columns):
                        raise ValueError("its index names items outside the model")
                    # A model whose table grew since keeps the index; new items have no sessions.
                    ones = np.ones(indices.size, dtype=np.float32)
                    sessions = sp.csr_matrix((ones, indices, indptr), shape=(rows, n_items))
                transitions = None
                if "transitions_indptr" in arrays:
                    transitions = _transitions(arrays, n_items)
            return cls(
                weights=FusionWeights(**settings["weights"]),
                sessions=sessions,
                transitions=transitions,
                k=int(settings["k"]),
                recent_decay=float(settings["recent_decay"]),
                candidates=CandidateBudget(**settings.get("candidates", {})),
                validation={str(k): float(v) for k, v in settings["validation"].items()},
            )
        except (OSError, zipfile.BadZipFile, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a ranker file: {exc!r}") from None
        except ValueError as exc:  # numpy refuses pickles; bad JSON, shapes or weights
            raise ValueError(f"not a ranker file: {exc}") from None


def _transitions(arrays: Any, n_items: int) -> sp.csr_matrix:
    """The released transitions of ``ranker.npz``, checked to fit a model of ``n_items``."""
    indptr = arrays["transitions_indptr"]
    indices, data = arrays["transitions_indices"], arrays["transitions_data"]
    rows = indptr.size - 1
    if rows > n_items or indices.size != data.size:
        raise ValueError(f"its transitions have {rows} items, the model {n_items}")
    if indices.size and (indices.min() < 1 or indices.max() >= rows):
        raise ValueError("its transitions name items outside the model")
    if not np.all(np.isfinite(data)) or (data.size and data.min() < 0):
        raise ValueError("its transitions hold negative or non-finite counts")
    matrix = sp.csr_matrix((data, indices, indptr), shape=(rows, rows))
    # A model whose table grew since keeps them; new items have no pairs.
    matrix.resize((n_items, n_items))
    return matrix
