"""The served ranker: one artifact, the same lists in the worker and in evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from model.checkpoint import load_checkpoint, save_checkpoint, save_ranker
from model.config import ScorerConfig
from model.evaluation.evaluate import CheckpointRanker
from model.ranking.knn import item_matrix
from model.ranking.parts import FusionWeights, RankerParts
from model.ranking.ranker import served_ranker
from model.scorer import SequenceScorer
from model.serving.scorers import CheckpointScorer
from model.vocab import ItemVocab

ITEMS = [f"i{n}" for n in range(1, 12)]
#: Training sessions: after i1 comes i2 (three times), i3 never follows it.
SESSIONS = [[1, 2], [1, 2], [1, 2, 5], [3, 4], [6, 7, 8]]


def _run(tmp_path: Path, parts: RankerParts | None) -> Path:
    torch.manual_seed(0)
    model = SequenceScorer(ScorerConfig(n_items=len(ITEMS) + 1, d_model=16, n_heads=2)).eval()
    folder = save_checkpoint(
        tmp_path / "run",
        epoch=1,
        model=model,
        optimizer=torch.optim.Adam(model.parameters()),
        vocab=ItemVocab.build([ITEMS]),
        meta={},
    )
    if parts is not None:
        save_ranker(folder, parts)
    return tmp_path / "run"


def _parts(weights: FusionWeights) -> RankerParts:
    return RankerParts(weights=weights, sessions=item_matrix(SESSIONS, n_items=len(ITEMS) + 1))


def test_the_checkpoint_carries_its_mix_and_the_ranker_follows_it(tmp_path: Path) -> None:
    knn_only = load_checkpoint(_run(tmp_path, _parts(FusionWeights(0.0, 1.0, 0.0))))
    assert knn_only.ranking is not None and knn_only.ranking.weights.neighbours == 1.0
    [scores] = served_ranker(knn_only).score_many([[1]])
    # kNN: i2 is in every session with i1, i5 in one; i3 and i9 in none.
    assert scores[2] > scores[5] > scores[3] == scores[9] == 0
    recent = load_checkpoint(_run(tmp_path / "r", _parts(FusionWeights(0.1, 0.0, 0.9))))
    assert served_ranker(recent).score_many([[9, 1]])[0].argmax().item() == 1  # latest item
    probabilities = served_ranker(recent).score_many([[1, 2]])
    assert torch.isneginf(probabilities[:, 0]).all()
    assert torch.allclose(probabilities[:, 1:].sum(dim=1), torch.ones(1))


def test_transformer_only_ignores_the_parts(tmp_path: Path) -> None:
    checkpoint = load_checkpoint(_run(tmp_path, _parts(FusionWeights(0.0, 1.0, 0.0))))
    alone = served_ranker(checkpoint, transformer_only=True).score_many([[1]])
    plain = load_checkpoint(_run(tmp_path / "plain", None))
    assert plain.ranking is None
    assert torch.allclose(alone, served_ranker(plain).score_many([[1]]))


def test_the_worker_serves_the_lists_evaluation_scores(tmp_path: Path) -> None:
    """The worker's scorer and ``evaluate``'s ranker give the same top lists."""
    run = _run(tmp_path, _parts(FusionWeights.mix(transformer=0.5, recent=0.2)))
    checkpoint = load_checkpoint(run)
    worker = CheckpointScorer(checkpoint, bf16=False)
    evaluation = CheckpointRanker(checkpoint, checkpoint.vocab)
    histories = [["i1"], ["i3", "i9"], ["i6", "i7", "i6"], ["i11", "i2", "i5"]]
    served = worker.score_many(histories, k=5)
    scores = evaluation.score_many([checkpoint.vocab.encode(h) for h in histories])
    for lists, row in zip(served, scores, strict=True):
        top = row.topk(5)
        assert [item for item, _ in lists] == [checkpoint.vocab.ids[i] for i in top.indices]
        assert [score for _, score in lists] == pytest.approx(top.values.tolist(), abs=1e-6)


def test_ranker_parts_round_trip_and_refuse_what_does_not_fit() -> None:
    parts = _parts(FusionWeights.mix(transformer=0.6, recent=0.1))
    parts = RankerParts(parts.weights, parts.sessions, k=7, validation={"P@20": 1.5})
    back = RankerParts.from_bytes(parts.to_bytes(), n_items=len(ITEMS) + 1)
    assert (back.weights, back.k, back.validation) == (parts.weights, 7, {"P@20": 1.5})
    assert back.sessions is not None and parts.sessions is not None
    assert (back.sessions != parts.sessions).nnz == 0
    with pytest.raises(ValueError, match="items"):
        RankerParts.from_bytes(parts.to_bytes(), n_items=5)
    with pytest.raises(ValueError, match="not a ranker file"):
        RankerParts.from_bytes(b"PK not a zip", n_items=5)
    with pytest.raises(ValueError, match="index"):
        RankerParts(FusionWeights(0.5, 0.5, 0.0))  # a kNN weight without sessions
    with pytest.raises(ValueError):
        FusionWeights(0.0, 0.0, 0.0)


def test_a_private_checkpoint_ranks_with_its_released_transitions(tmp_path: Path) -> None:
    n_items = len(ITEMS) + 1
    # Released counts: i2 is held near i1 far more than i5; nothing near i3.
    released = sp.csr_matrix(
        (np.array([30.0, 6.0, 30.0], dtype=np.float32), ([1, 1, 2], [2, 5, 1])),
        shape=(n_items, n_items),
    )
    parts = RankerParts(FusionWeights(0.0, 1.0, 0.0), transitions=released)
    checkpoint = load_checkpoint(_run(tmp_path, parts))
    assert checkpoint.ranking is not None and checkpoint.ranking.sessions is None
    [scores] = served_ranker(checkpoint).score_many([[1]])
    assert scores[2] > scores[5] > scores[3] == 0
    assert checkpoint.ranking.popular_items().tolist() == [1, 2, 5]
    with pytest.raises(ValueError, match="not both"):
        RankerParts(
            parts.weights, sessions=item_matrix(SESSIONS, n_items=n_items), transitions=released
        )
    negative = RankerParts(parts.weights, transitions=released * -1.0)
    with pytest.raises(ValueError, match="negative"):
        RankerParts.from_bytes(negative.to_bytes(), n_items=n_items)
    with pytest.raises(ValueError, match="items"):
        RankerParts.from_bytes(parts.to_bytes(), n_items=2)
