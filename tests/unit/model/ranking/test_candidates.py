"""Two-stage serving: the candidates hold what each part would rank, scored as in full ranking."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint, save_ranker
from model.config import ScorerConfig
from model.evaluation.evaluate import CheckpointRanker
from model.ranking.candidates import CandidateRanker, NearestItems
from model.ranking.fusion import FusedRanker
from model.ranking.knn import SessionKNN, item_matrix
from model.ranking.parts import CandidateBudget, FusionWeights, RankerParts
from model.ranking.ranker import served_ranker
from model.scorer import SequenceScorer
from model.serving.scorers import CheckpointScorer
from model.vocab import ItemVocab

N = 301  # 300 items and padding
WEIGHTS = FusionWeights.mix(transformer=0.5, recent=0.2)
HISTORIES = [[5], [7, 9, 7], [11, 12, 13, 14], [250, 3, 250, 8, 1]]


def _model() -> SequenceScorer:
    torch.manual_seed(0)
    return SequenceScorer(ScorerConfig(n_items=N, d_model=16, n_heads=2, max_len=8)).eval()


SMALL = CandidateBudget(10, 10, 5)


def _parts(budget: CandidateBudget = SMALL) -> RankerParts:
    rng = random.Random(0)
    sessions = [[rng.randrange(1, 60) for _ in range(rng.randrange(2, 6))] for _ in range(400)]
    return RankerParts(WEIGHTS, item_matrix(sessions, n_items=N), k=20, candidates=budget)


def _rankers(parts: RankerParts) -> tuple[CandidateRanker, FusedRanker]:
    model = _model()
    assert parts.sessions is not None
    knn = SessionKNN.from_sessions(parts.sessions, k=parts.k, weighting="linear")
    popular = torch.from_numpy(parts.popular_items())
    two_stage = CandidateRanker(
        model, weights=WEIGHTS, knn=knn, popular=popular, budget=parts.candidates
    )
    full = served_ranker(_checkpoint(model, parts), full_ranking=True)
    assert isinstance(full, FusedRanker)
    return two_stage, full


def _checkpoint(model: SequenceScorer, parts: RankerParts) -> Checkpoint:
    return Checkpoint(
        path=Path("unsaved"),
        model=model,
        vocab=ItemVocab.build([[f"i{n}" for n in range(1, N)]]),
        meta={"version": "v1"},
        ranking=parts,
    )


def test_with_every_item_a_candidate_it_ranks_as_full_ranking_does() -> None:
    two_stage, full = _rankers(_parts(CandidateBudget(0, N - 1, 0)))
    expected = full.score_many(HISTORIES)
    got = two_stage.score_many(HISTORIES)
    torch.testing.assert_close(got[:, 1:], expected[:, 1:], rtol=1e-4, atol=1e-6)


def test_candidates_hold_each_sources_items_and_keep_knn_and_recent_scores() -> None:
    parts = _parts()
    two_stage, _ = _rankers(parts)
    assert parts.sessions is not None
    knn = SessionKNN.from_sessions(parts.sessions, k=parts.k, weighting="linear")
    knn_scores = knn.score_many(HISTORIES)
    popular = parts.popular_items()[:5]
    candidates = two_stage.candidates(HISTORIES)
    for row, history in enumerate(HISTORIES):
        items = set(candidates.items[row].tolist()) - {0}
        assert set(history) <= items
        held = knn_scores[row, sorted(items)]  # kNN's top 10 are in, whichever of ties
        assert held.topk(10).values.tolist() == knn_scores[row].topk(10).values.tolist()
        assert set(popular.tolist()) <= items
        assert len(items) == int((candidates.items[row] != 0).sum())  # no duplicates
        assert len(items) <= len(set(history)) + parts.candidates.total
    dense = candidates.dense(N)
    outside = dense == float("-inf")
    assert outside[:, 0].all() and outside.sum(dim=1).min() > N // 2
    # Without the transformer, the candidates score what full ranking gives them.
    parts_only = FusionWeights(transformer=1e-9, neighbours=0.5, recent=0.5)
    both = CandidateRanker(
        _model(),
        weights=parts_only,
        knn=knn,
        popular=torch.from_numpy(parts.popular_items()),
        budget=parts.candidates,
    )
    full = served_ranker(
        _checkpoint(_model(), RankerParts(parts_only, parts.sessions, k=parts.k)),
        full_ranking=True,
    )
    got, expected = both.score_many(HISTORIES), full.score_many(HISTORIES)
    kept = ~torch.isneginf(got)
    torch.testing.assert_close(got[kept], expected[kept], rtol=1e-4, atol=1e-6)


def test_the_served_ranker_ranks_candidates_unless_told_or_the_catalogue_is_small() -> None:
    parts = _parts()
    assert isinstance(served_ranker(_checkpoint(_model(), parts)), CandidateRanker)
    assert isinstance(served_ranker(_checkpoint(_model(), parts), full_ranking=True), FusedRanker)
    wide = RankerParts(WEIGHTS, parts.sessions, k=20, candidates=CandidateBudget(100, 100, 50))
    assert isinstance(served_ranker(_checkpoint(_model(), wide)), FusedRanker)


def test_the_worker_serves_the_two_stage_lists_evaluation_scores(tmp_path: Path) -> None:
    model = _model()
    vocab = ItemVocab.build([[f"i{n}" for n in range(1, N)]])
    folder = save_checkpoint(
        tmp_path / "run",
        epoch=1,
        model=model,
        optimizer=torch.optim.Adam(model.parameters()),
        vocab=vocab,
        meta={},
    )
    save_ranker(folder, _parts())
    checkpoint = load_checkpoint(tmp_path / "run")
    histories = [[vocab.ids[i] for i in history] for history in HISTORIES]
    served = CheckpointScorer(checkpoint, bf16=False).score_many(histories, k=20)
    scores = CheckpointRanker(checkpoint, checkpoint.vocab).score_many(HISTORIES)
    for lists, row in zip(served, scores, strict=True):
        top = row.topk(20)
        assert [item for item, _ in lists] == [vocab.ids[i] for i in top.indices]
        assert len(lists) == 20
    every = CheckpointScorer(checkpoint, bf16=False, full_ranking=True).score_many(histories, k=20)
    assert served != every  # the setting reaches the ranker


def test_the_budget_round_trips_and_older_parts_get_the_default() -> None:
    parts = _parts(CandidateBudget(7, 8, 9))
    back = RankerParts.from_bytes(parts.to_bytes(), n_items=N)
    assert back.candidates == CandidateBudget(7, 8, 9)
    with np.load(io.BytesIO(parts.to_bytes())) as arrays:
        stored = dict(arrays)
    settings = json.loads(stored["settings"].tobytes())
    del settings["candidates"]
    stored["settings"] = np.frombuffer(json.dumps(settings).encode(), np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **stored)
    assert RankerParts.from_bytes(buffer.getvalue(), n_items=N).candidates == CandidateBudget()
    with pytest.raises(ValueError):
        CandidateBudget(nearest=0)


def test_nearest_items_finds_the_closest_rows_and_never_padding() -> None:
    torch.manual_seed(1)
    table = torch.nn.functional.normalize(torch.randn(500, 16), dim=-1)
    table[0] = 0
    queries = table[[3, 77, 499]]
    found = NearestItems(table).search(queries, k=5)
    exact = (queries @ table[1:].T).topk(5).indices + 1
    assert found[:, 0].tolist() == [3, 77, 499]
    assert (found == exact).float().mean() >= 0.9
    assert NearestItems(table[:4]).search(queries, k=5)[:, 3:].tolist() == [[0, 0]] * 3


def test_the_transformers_candidate_probabilities_are_its_full_ranking_ones() -> None:
    """The items left out still weigh in the softmax's normaliser (estimated from a sample)."""
    parts = _parts()
    alone = FusionWeights(1.0, 0.0, 0.0)
    popular = torch.from_numpy(parts.popular_items())
    two_stage = CandidateRanker(
        _model(),
        weights=alone,
        knn=None,
        popular=popular,
        budget=parts.candidates,
        tail_sample=20_000,
    )
    full = served_ranker(_checkpoint(_model(), RankerParts(alone)), full_ranking=True)
    got, expected = two_stage.score_many(HISTORIES), full.score_many(HISTORIES)
    kept = ~torch.isneginf(got)
    assert kept.sum(dim=1).max() < N // 4  # most items are not candidates
    torch.testing.assert_close(got[kept], expected[kept], rtol=0.03, atol=1e-5)
