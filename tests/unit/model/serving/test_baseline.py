"""The stream-learned baselines: co-occurrence with popularity fill, purchase rate."""

from __future__ import annotations

import pytest

from model.serving.baseline import CooccurrenceRecommender, NextPurchaseRate
from model.serving.catalogue import CatalogueItems


def _learn(rec: CooccurrenceRecommender, sequences: list[list[str]]) -> None:
    for sequence in sequences:
        for position, item in enumerate(sequence):
            rec.learn_one(sequence[:position], item)


def test_next_items_rank_by_transition_share_then_own_items_then_popularity() -> None:
    rec = CooccurrenceRecommender(refresh_every=1)
    _learn(rec, [["a", "b"], ["a", "b"], ["a", "c"], ["d"], ["d"], ["d"], ["e"]])
    # After "a": b twice, c once; then the user's own item a; then popularity (d 3, e 1).
    assert rec.recommend(["a"], k=5) == [
        ("b", pytest.approx(2 / 3, abs=1e-6)),
        ("c", pytest.approx(1 / 3, abs=1e-6)),
        ("a", pytest.approx(0.05, abs=1e-6)),
        ("d", pytest.approx(0.01 * 3 / 10, abs=1e-6)),
        ("e", pytest.approx(0.01 * 1 / 10, abs=1e-6)),
    ]


def test_own_recent_items_fill_in_before_anything_is_learned() -> None:
    rec = CooccurrenceRecommender()
    assert rec.recommend(["x", "y", "x", "z"], k=5) == [("z", 0.05), ("x", 0.025), ("y", 0.016667)]


def test_older_items_count_less_than_the_latest() -> None:
    rec = CooccurrenceRecommender(refresh_every=1)
    _learn(rec, [["x", "old_next"], ["y", "new_next"]])
    ranked = [item for item, _ in rec.recommend(["x", "y"], k=2)]
    assert ranked == ["new_next", "old_next"]


def test_cold_user_gets_the_most_popular_items() -> None:
    rec = CooccurrenceRecommender(refresh_every=1)
    _learn(rec, [["a"], ["b"], ["b"], ["c"], ["c"], ["c"]])
    assert [item for item, _ in rec.recommend([], k=2)] == ["c", "b"]
    assert rec.recommend([], k=10)[-1][0] == "a"
    assert len(rec.recommend([], k=10)) == 3


def test_purchase_rate_follows_observed_transitions() -> None:
    rate = NextPurchaseRate(n_types=5)
    prior = rate.predict_one(3)
    for _ in range(50):
        rate.learn_one(3, 4)
    assert rate.predict_one(3) > 0.5 > prior
    assert rate.predict_one(0) == prior


def test_a_known_catalogue_fills_every_list_category_first() -> None:
    """A new shop's first shopper: own item, its category's items, then the rest; k items."""
    catalogue = CatalogueItems()
    catalogue.update({"k1": "kitchen", "s1": "shoes", "s2": "shoes", "s3": "shoes", "x": None})
    rec = CooccurrenceRecommender(refresh_every=1, catalogue=catalogue)
    ranked = rec.recommend(["s2"], k=5)
    assert [item for item, _ in ranked][:3] == ["s2", "s1", "s3"]
    assert {item for item, _ in ranked} == {"k1", "s1", "s2", "s3", "x"}
    scores = [score for _, score in ranked]
    assert scores == sorted(scores, reverse=True)


def test_released_popularity_orders_the_category_fill_and_negative_noise_counts_as_none() -> None:
    catalogue = CatalogueItems()
    catalogue.update({"s1": "shoes", "s2": "shoes", "s3": "shoes", "k1": "kitchen"})
    rec = CooccurrenceRecommender(refresh_every=1, catalogue=catalogue)
    rec.learn_counts({"s1": -4, "s2": 1, "s3": 9, "k1": 50}, {})
    ranked = [item for item, _ in rec.recommend(["s1"], k=4)]
    assert ranked == ["s1", "s3", "s2", "k1"]  # own, shoes by popularity, then the rest
    assert [item for item, _ in rec.recommend([], k=2)] == ["k1", "s3"]
