"""Shared counts with a public catalogue: every catalogued item's popularity is released,
noisy and without a threshold, at no extra privacy cost."""

from __future__ import annotations

import math
import threading
from fractions import Fraction

import numpy as np
import pytest

from model.serving.baseline import CooccurrenceRecommender
from model.serving.catalogue import CatalogueItems
from model.threshold import (
    loss_target,
    public_mechanism,
    release_public_counts,
    threshold_mechanism,
)
from streams.pipeline import shared_counts
from streams.pipeline.intent import IntentPredictor
from streams.pipeline.shared_counts import SharedCounts, SharingConfig
from streams.pipeline.state import UserState

CONFIG = SharingConfig(
    budget_epsilon=2.0, epsilon=1.0, delta=1e-6, max_items=3, window_seconds=100.0
)


def _shared(catalogue: CatalogueItems | None) -> tuple[SharedCounts, CooccurrenceRecommender]:
    recommender = CooccurrenceRecommender(refresh_every=1, catalogue=catalogue)
    intent = IntentPredictor()
    shared = SharedCounts(
        CONFIG,
        recommender=recommender,
        intent=intent.rate,
        cell_intent=intent.cell,
        catalogue=catalogue,
    )
    return shared, recommender


def _view(shared: SharedCounts, state: UserState, item: str, now: float) -> None:
    shared.contribute(
        state,
        item=item,
        previous_item=None,
        previous_cell=None,
        current_type=0,
        now=now,
        partition=0,
    )


def _catalogue(**categories: str | None) -> CatalogueItems:
    catalogue = CatalogueItems()
    catalogue.update(categories)
    return catalogue


def test_a_catalogue_releases_every_items_popularity_and_none_outside_it() -> None:
    """One shopper's view of a catalogued item is released (noisy); without a catalogue
    the threshold hides it, and an item outside the catalogue adds no popularity."""
    catalogue = _catalogue(a="shoes", b="shoes", never_viewed=None)
    shared, recommender = _shared(catalogue)
    state = UserState()
    _view(shared, state, "a", now=10.0)
    _view(shared, state, "not-catalogued", now=11.0)
    shared.advance(now=100.0)
    assert shared.learn_finished(wait=True) == 3  # released in a thread, learned after
    assert shared.released_windows == 1
    assert {"a", "b", "never_viewed"} <= {item for item in catalogue if recommender.knows(item)}
    assert not recommender.knows("not-catalogued")

    bare, bare_recommender = _shared(None)
    _view(bare, UserState(), "a", now=10.0)
    bare.advance(now=100.0)
    assert not bare_recommender.knows("a")


def test_a_window_opened_before_the_catalogue_was_known_keeps_its_threshold() -> None:
    """Its users may have added up to max_keys thresholded keys: its release was certified so."""
    catalogue = CatalogueItems()
    shared, recommender = _shared(catalogue)
    _view(shared, UserState(), "a", now=10.0)
    catalogue.update({"a": None})
    _view(shared, UserState(), "a", now=20.0)
    shared.advance(now=100.0)
    assert not recommender.knows("a")  # 2 contributors: under the threshold
    _view(shared, UserState(), "a", now=110.0)  # the next window has the catalogue
    shared.advance(now=200.0)
    shared.learn_finished(wait=True)
    assert recommender.knows("a")


def test_the_two_releases_of_a_window_compose_to_no_more_than_its_epsilon() -> None:
    """Popularity (max_items keys a user) and the rest (max_items + 1 keys), same scale."""
    popularity, rest = CONFIG.epsilons()
    assert Fraction(popularity) + Fraction(rest) <= Fraction(loss_target(CONFIG.epsilon))
    public = public_mechanism(CONFIG.max_items, popularity)
    threshold = threshold_mechanism(CONFIG.max_items + 1, rest, CONFIG.delta)
    loss_public = public.map(CONFIG.max_items)
    d_in = (CONFIG.max_items + 1, CONFIG.max_items + 1, 1)
    loss_rest, delta = threshold.map(d_in)
    assert float(loss_public) + float(loss_rest) <= CONFIG.epsilon
    assert delta <= CONFIG.delta
    # Not over-noised: the scale is the old max_keys / epsilon, so the loss is the share.
    assert float(loss_public) > 0.999 * popularity


def test_public_counts_get_unbiased_laplace_noise_of_scale_max_keys_over_epsilon() -> None:
    """20,000 draws: a scale 10 % off would be 20 standard errors away."""
    noisy = release_public_counts(np.full(20_000, 5), max_keys=3, epsilon=3 / 7)
    assert abs(float(noisy.mean()) - 5) < 0.3
    assert abs(float(noisy.std()) - 7 * math.sqrt(2)) < 0.35  # discrete Laplace, scale 7


def test_the_catalogue_release_runs_off_the_callers_thread_and_is_learned_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A large catalogue's exact sampling (12 us an item) must not stall the event loop."""
    threads = []

    def release(counts: np.ndarray, *, max_keys: int, epsilon: float) -> np.ndarray:
        threads.append(threading.current_thread())
        return release_public_counts(counts, max_keys=max_keys, epsilon=epsilon)

    monkeypatch.setattr(shared_counts, "release_public_counts", release)
    shared, recommender = _shared(_catalogue(a="shoes"))
    _view(shared, UserState(), "a", now=10.0)
    shared.advance(now=100.0)
    assert not recommender.knows("a")  # only a later batch learns it
    assert shared.learn_finished(wait=True) == 1 and recommender.knows("a")
    assert threads and threads[0] is not threading.current_thread()
