"""Serving: search ranking across languages, personalisation, cold start, checkpoint fallback."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from model.checkpoint import load_checkpoint
from model.serving.baseline import BASELINE_VERSION, CooccurrenceRecommender
from model.serving.catalogue import CatalogueItems, TextCatalogue
from model.serving.ranker import ContextRanker, RankerConfig, RankRequest
from model.serving.scorers import NEW_ITEMS_WEIGHT, CheckpointScorer, rounded
from model.serving.text import TextEncoder

# A small shop with English and Chinese titles; "shoe-red"/"shoe-blue" are equally
# relevant to a shoe query, so only behaviour can order them.
TITLES = {
    "shoe-red": "red running shoes",
    "shoe-blue": "blue running shoes",
    "kettle": "stainless steel kettle",
    "headphones": "wireless bluetooth headphones",
    "tea-zh": "有机绿茶",  # organic green tea
    "wallet-zh": "男士皮夹",  # leather wallet for men
    "mat-zh": "瑜伽垫",  # yoga mat
}


def _catalogue(encoder: TextEncoder, titles: dict[str, str]) -> TextCatalogue:
    catalogue = TextCatalogue(dim=encoder.dim)
    catalogue.add(list(titles), encoder.encode_many(list(titles.values())))
    return catalogue


def _baseline(*walks: list[str]) -> CooccurrenceRecommender:
    baseline = CooccurrenceRecommender(refresh_every=1)
    for walk in walks:
        for position, item in enumerate(walk):
            baseline.learn_one(walk[:position], item)
    return baseline


def _ranker(
    encoder: TextEncoder, baseline: CooccurrenceRecommender, **config: int
) -> ContextRanker:
    return ContextRanker(
        baseline,
        fallback=baseline,
        catalogue=_catalogue(encoder, TITLES),
        encode_queries=encoder.encode_many,
        config=RankerConfig(**{"top_k": 3, **config}),
    )


def test_a_chinese_query_finds_the_english_item_and_the_reverse(encoder: TextEncoder) -> None:
    ranker = _ranker(encoder, _baseline(["kettle", "headphones"]))
    tea, kettle = ranker.rank_many(
        [RankRequest(history=(), query="green tea"), RankRequest(history=(), query="不锈钢水壶")]
    )
    assert tea.context == kettle.context == "search"
    assert tea.items[0][0] == "tea-zh"
    assert kettle.items[0][0] == "kettle"


def test_search_is_personalised_by_behaviour(encoder: TextEncoder) -> None:
    # Shoppers who look at the kettle go on to the blue shoes; headphones lead to red ones.
    ranker = _ranker(
        encoder,
        _baseline(["kettle", "shoe-blue"], ["kettle", "shoe-blue"], ["headphones", "shoe-red"]),
    )
    after_kettle, after_headphones = ranker.rank_many(
        [
            RankRequest(history=("kettle",), query="跑步鞋"),  # "running shoes"
            RankRequest(history=("headphones",), query="跑步鞋"),
        ]
    )
    assert [item for item, _ in after_kettle.items[:2]] == ["shoe-blue", "shoe-red"]
    assert [item for item, _ in after_headphones.items[:2]] == ["shoe-red", "shoe-blue"]


def test_a_new_item_with_only_a_title_is_recommended_to_related_users(
    encoder: TextEncoder,
) -> None:
    baseline = _baseline(["shoe-red", "shoe-blue", "kettle"], ["headphones", "kettle"])
    ranker = ContextRanker(
        baseline,
        fallback=baseline,
        catalogue=_catalogue(
            encoder, {**TITLES, "new-shoe-zh": "女士跑步鞋", "new-mug-en": "ceramic coffee mug"}
        ),
        encode_queries=encoder.encode_many,
        config=RankerConfig(top_k=5),
    )
    assert not baseline.knows("new-shoe-zh")
    [runner] = ranker.rank_many([RankRequest(history=("shoe-red", "shoe-blue"))])
    items = [item for item, _ in runner.items]
    assert runner.context == "browse" and runner.model_version == BASELINE_VERSION
    assert "new-shoe-zh" in items  # women's running shoes, in Chinese
    assert "new-mug-en" not in items


@pytest.fixture
def scorer(tmp_path: Path, tiny_checkpoint: Callable[..., Path]) -> CheckpointScorer:
    """A tiny checkpoint over items a-e, scoring two histories per chunk."""
    return CheckpointScorer(load_checkpoint(tiny_checkpoint(tmp_path / "run")), chunk_size=2)


def test_checkpoint_scores_known_users_and_the_baseline_answers_the_rest(
    scorer: CheckpointScorer,
) -> None:
    baseline = _baseline(["x", "y"])
    ranker = ContextRanker(scorer, fallback=baseline, config=RankerConfig(top_k=3))
    known, unknown, mixed = ranker.rank_many(
        [RankRequest(history=("a", "b")), RankRequest(history=("x",)), RankRequest(("x", "c"))]
    )
    assert known.model_version == mixed.model_version == scorer.version
    assert scorer.version.startswith("seq-")
    assert unknown.model_version == BASELINE_VERSION and unknown.items[0][0] == "y"
    scores = [score for _, score in known.items]
    assert scores == sorted(scores, reverse=True) and all(-1 <= s <= 1 for s in scores)
    assert {item for item, _ in known.items} <= {"a", "b", "c", "d", "e"}


def test_checkpoint_scoring_in_chunks_equals_one_by_one(scorer: CheckpointScorer) -> None:
    histories = [("a",), ("b", "c"), ("e", "d", "a"), ("c",), ("zzz", "b")]
    together = scorer.score_many(histories, k=5)
    alone = [scorer.score_many([history], k=5)[0] for history in histories]
    for row_together, row_alone in zip(together, alone, strict=True):
        assert [i for i, _ in row_together] == [i for i, _ in row_alone]
        assert [s for _, s in row_together] == [s for _, s in row_alone]


def test_a_shoppers_own_item_new_since_training_stays_in_their_list(
    scorer: CheckpointScorer,
) -> None:
    """Without it a shopper who keeps viewing an item the model never saw is never shown it."""
    [with_new, known_only] = scorer.score_many([("a", "b", "new-item"), ("a", "b")], k=5)
    assert [item for item, _ in with_new if item not in "abcde"] == ["new-item"]
    assert len(with_new) == 5 and [s for _, s in with_new] == sorted(
        (s for _, s in with_new), reverse=True
    )
    # The recent-items share of the latest of three events: weight * 1 / (1 + 0.5 + 0.25).
    assert dict(with_new)["new-item"] >= round(NEW_ITEMS_WEIGHT / 1.75, 6)
    assert {item for item, _ in known_only} <= set("abcde")


def test_a_model_list_shorter_than_top_k_is_topped_up_from_the_catalogue(
    scorer: CheckpointScorer,
) -> None:
    """A model that knows 5 items still answers top_k items once the catalogue is known."""
    catalogue = CatalogueItems()
    catalogue.update(dict.fromkeys("abcdefghij", "shoes"))
    baseline = CooccurrenceRecommender(catalogue=catalogue)
    ranker = ContextRanker(scorer, fallback=baseline, config=RankerConfig(top_k=8))
    [answer] = ranker.rank_many([RankRequest(history=("a", "b"))])
    assert answer.model_version == scorer.version and len(answer.items) == 8
    items = [item for item, _ in answer.items]
    assert set(items[:5]) == set("abcde") and items[5:] == ["f", "g", "h"]
    scores = [score for _, score in answer.items]
    assert scores == sorted(scores, reverse=True)


def test_a_scorer_names_the_epsilon_it_was_trained_under(
    tiny_checkpoint: Callable[..., Path], tmp_path: Path
) -> None:
    private = {"epsilon": 2.5, "delta": 1e-6}
    dp = tiny_checkpoint(tmp_path / "dp", meta={"privacy": private})
    plain = tiny_checkpoint(tmp_path / "plain", meta={"privacy": None})
    broken = tiny_checkpoint(tmp_path / "broken", meta={"privacy": {"epsilon": "low"}})
    assert CheckpointScorer(load_checkpoint(dp)).epsilon == 2.5
    assert CheckpointScorer(load_checkpoint(plain)).epsilon == math.inf  # not DP-trained
    with pytest.raises(ValueError, match="no valid epsilon"):
        CheckpointScorer(load_checkpoint(broken))
    assert math.isnan(CooccurrenceRecommender().epsilon)  # no per-session figure


@given(st.lists(st.floats(0.0, 1e4, width=32), min_size=1, max_size=50))
def test_scores_round_as_python_rounds_them(scores: list[float]) -> None:
    assert rounded(torch.tensor([scores], dtype=torch.float32)) == [[round(s, 6) for s in scores]]


def test_a_deeper_ranking_keeps_the_list_and_extends_it(
    scorer: CheckpointScorer, encoder: TextEncoder
) -> None:
    """Sponsored items' candidates come from the same ranking, without moving the list."""
    catalogue = CatalogueItems()
    catalogue.update(dict.fromkeys("abcdefghijklmnop", "shoes"))
    baseline = CooccurrenceRecommender(catalogue=catalogue)
    ranker = ContextRanker(
        scorer,
        fallback=baseline,
        catalogue=_catalogue(encoder, TITLES),
        encode_queries=encoder.encode_many,
        config=RankerConfig(top_k=6, search_candidates=8),
    )
    requests = [
        RankRequest(history=("a", "b")),  # the model's 5, topped up by the baseline
        RankRequest(history=("x",)),  # unknown to the model: the baseline's
        RankRequest(history=("a",), query="running shoes"),
    ]
    shallow = ranker.rank_many(requests)
    deep = ranker.rank_many(requests, depth=12)
    assert [a.items for a in deep] == [a.items for a in shallow]
    assert all(a.deep is None for a in shallow)
    for answer in deep:
        assert answer.deep is not None and answer.deep[:6] == answer.items
    # A search ranks the titles nearest the query: all 7 of this catalogue.
    assert [len(a.deep or []) for a in deep] == [12, 12, 7]
