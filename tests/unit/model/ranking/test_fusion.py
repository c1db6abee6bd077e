"""Late fusion of rankers, and scoring a checkpoint in another vocabulary's indices."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.checkpoint import load_checkpoint, save_checkpoint
from model.config import ScorerConfig
from model.evaluation.evaluate import CheckpointRanker
from model.ranking.fusion import FusedRanker, RecentItems, as_distribution
from model.scorer import PrefixRanker, SequenceScorer
from model.vocab import ItemVocab

NEG = float("-inf")


class Fixed:
    """A ranker returning the same scores for every prefix."""

    def __init__(self, row: list[float]) -> None:
        self.row = torch.tensor([row])

    def score_many(self, prefixes: list[list[int]], /) -> torch.Tensor:
        return self.row.expand(len(prefixes), -1).clone()


def test_distributions_sum_to_one_and_ignore_padding() -> None:
    logits = as_distribution(torch.tensor([[NEG, 0.0, 0.0]]), "logits")
    counts = as_distribution(torch.tensor([[NEG, 2.0, 6.0], [NEG, 0.0, 0.0]]), "counts")
    assert logits.tolist() == [[0.0, 0.5, 0.5]]
    assert counts.tolist() == [[0.0, 0.25, 0.75], [0.0, 0.0, 0.0]]


def test_fusion_weights_move_the_ranking_between_the_parts() -> None:
    model = Fixed([NEG, 10.0, 0.0, 0.0])  # confident in item 1
    knn = Fixed([NEG, 0.0, 1.0, 3.0])  # prefers item 3
    top = {
        w: FusedRanker([(model, "logits", w), (knn, "counts", 1 - w)])
        .score_many([[1]])
        .argmax(dim=1)
        .item()
        for w in (0.0, 0.5, 1.0)
    }
    assert top == {0.0: 3, 0.5: 1, 1.0: 1}
    fused = FusedRanker([(model, "logits", 1.0), (knn, "counts", 1.0)]).score_many([[1], [2]])
    assert torch.isneginf(fused[:, 0]).all()
    assert torch.allclose(fused[:, 1:].sum(dim=1), torch.ones(2))


def test_fusion_needs_positive_weights() -> None:
    with pytest.raises(ValueError):
        FusedRanker([(Fixed([NEG, 1.0]), "counts", 0.0)])


def test_checkpoint_scores_are_reindexed_to_the_evaluation_vocabulary(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = SequenceScorer(ScorerConfig(n_items=4, d_model=8, n_heads=2, max_len=4)).eval()
    trained_on = ItemVocab.build([["a", "b", "c"]])
    save_checkpoint(
        tmp_path,
        epoch=1,
        model=model,
        optimizer=torch.optim.Adam(model.parameters()),
        vocab=trained_on,
        meta={},
    )
    evaluated_on = ItemVocab.build([["c", "new", "a", "b"]])
    ranker = CheckpointRanker(load_checkpoint(tmp_path), evaluated_on)
    mine = ranker.score_many([[evaluated_on.index["a"], evaluated_on.index["c"]]])
    logits = PrefixRanker(model).score_many([[trained_on.index["a"], trained_on.index["c"]]])
    theirs = torch.softmax(logits, dim=-1)
    for item in ("a", "b", "c"):
        assert torch.isclose(mine[0, evaluated_on.index[item]], theirs[0, trained_on.index[item]])
    assert mine[0, evaluated_on.index["new"]] == NEG and mine[0, 0] == NEG


def test_recent_items_favour_the_latest_repeats_and_skip_padding() -> None:
    scores = RecentItems(n_items=5, decay=0.5).score_many([[1, 2, 3], [4]])
    assert scores[0, 1:].tolist() == [0.25, 0.5, 1.0, 0.0]
    assert scores[1, 1:].tolist() == [0.0, 0.0, 0.0, 1.0]
    assert torch.isneginf(scores[:, 0]).all()
