"""One contract over every online_learning estimator (STYLE.md, "Tests").

Each estimator is described by a :class:`Case`: how to build it, how to feed it
a seeded stream (returning what it answered along the way) and how to read its
state without changing it. The same checks then run on all of them: pickling,
cloning, deep copies, seeded repeatability; the estimators that take feature
dicts are also checked for key-order invariance and new or missing features.
``test_every_estimator_has_a_case`` keeps the list complete: every
``river.base.Base`` subclass defined in ``online_learning`` must appear here.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import math
import pickle
import pkgutil
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from river import base

import online_learning
from online_learning.drift import DriftMonitor
from online_learning.intent import EVENT_TYPES, IntentModel, intent_features
from online_learning.prequential import PrequentialLogLoss, PrequentialRanking

N_EVENTS = 600


@dataclass(frozen=True)
class Case:
    """How the contract drives one estimator."""

    make: Callable[[], Any]
    feed: Callable[[Any, random.Random], list[Any]]
    observe: Callable[[Any], Any]

    @property
    def cls(self) -> type:
        return type(self.make())


def _random_features(rng: random.Random) -> tuple[dict[str, float], bool]:
    counts = [rng.randrange(8) for _ in EVENT_TYPES]
    x = intent_features(
        counts,
        session_events=sum(counts),
        session_carts=counts[3],
        distinct_items=rng.randrange(1, 6),
        last_type=rng.randrange(-1, len(EVENT_TYPES)),
        session_seconds=rng.expovariate(1 / 300),
        idle_seconds=rng.expovariate(1 / 60),
    )
    return x, rng.random() < 0.1 + 0.1 * counts[3]


PROBES = [_random_features(random.Random(1000 + i))[0] for i in range(20)]


def _feed_intent(model: IntentModel, rng: random.Random) -> list[float]:
    out = []
    for _ in range(N_EVENTS):
        x, y = _random_features(rng)
        out.append(model.predict_one(x))  # prequential: predict, then learn
        model.learn_one(x, y)
    return out


def _feed_ranking(metric: PrequentialRanking, rng: random.Random) -> list[Any]:
    catalogue = [f"i{i}" for i in range(30)]
    return [
        metric.update_one(
            None if rng.random() < 0.1 else rng.sample(catalogue, rng.randrange(0, 15)),
            rng.choice(catalogue),
        )
        for _ in range(N_EVENTS)
    ]


def _feed_log_loss(metric: PrequentialLogLoss, rng: random.Random) -> list[float]:
    return [metric.update_one(rng.random(), rng.random() < 0.3) for _ in range(N_EVENTS)]


def _feed_drift(monitor: DriftMonitor, rng: random.Random) -> list[bool]:
    # A change halfway, so that the state after a detection is exercised too.
    return [
        monitor.update(float(rng.random() < (0.2 if i < N_EVENTS // 2 else 0.8)), at=float(i))
        for i in range(N_EVENTS)
    ]


CASES: dict[str, Case] = {
    "IntentModel": Case(
        make=IntentModel,
        feed=_feed_intent,
        observe=lambda model: model.predict_many(PROBES).tolist(),
    ),
    "PrequentialRanking": Case(
        make=lambda: PrequentialRanking(k=10, window=50),
        feed=_feed_ranking,
        observe=lambda metric: (metric.get(), metric.snapshot()),
    ),
    "PrequentialLogLoss": Case(
        make=lambda: PrequentialLogLoss(window=50),
        feed=_feed_log_loss,
        observe=lambda metric: (metric.get(), metric.snapshot()),
    ),
    "DriftMonitor": Case(
        make=DriftMonitor,
        feed=_feed_drift,
        observe=lambda monitor: (
            monitor.n,
            monitor.n_detections,
            monitor.last_detection_index,
            monitor.last_detection_at,
            monitor.estimation,
        ),
    ),
}

#: Estimators that take feature dicts.
FEATURE_CASES = ["IntentModel"]

cases = pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))


def test_every_estimator_has_a_case() -> None:
    found = set()
    for info in pkgutil.iter_modules(online_learning.__path__, "online_learning."):
        module = importlib.import_module(info.name)
        found |= {
            cls
            for _, cls in inspect.getmembers(module, inspect.isclass)
            if issubclass(cls, base.Base) and cls.__module__ == module.__name__
        }
    assert found == {case.cls for case in CASES.values()}


def _trained(case: Case, seed: int = 0) -> Any:
    estimator = case.make()
    case.feed(estimator, random.Random(seed))
    return estimator


@cases
def test_pickle_round_trip_gives_identical_results(case: Case) -> None:
    estimator = _trained(case)
    restored = pickle.loads(pickle.dumps(estimator))
    assert case.observe(restored) == case.observe(estimator)
    # ... and it goes on learning exactly like the original.
    assert case.feed(restored, random.Random(1)) == case.feed(estimator, random.Random(1))
    assert case.observe(restored) == case.observe(estimator)


@cases
def test_clone_is_a_fresh_estimator_with_the_same_parameters(case: Case) -> None:
    estimator = _trained(case)
    clone = estimator.clone()
    assert type(clone) is type(estimator)
    assert clone._get_params() == estimator._get_params()
    fresh = case.make()
    assert case.observe(clone) == case.observe(fresh)
    assert case.feed(clone, random.Random(2)) == case.feed(fresh, random.Random(2))


@cases
def test_deepcopy_is_identical_and_independent(case: Case) -> None:
    estimator = _trained(case)
    before = case.observe(estimator)
    duplicate = copy.deepcopy(estimator)
    assert case.observe(duplicate) == before
    case.feed(duplicate, random.Random(3))
    assert case.observe(estimator) == before


@cases
def test_seeded_streams_repeat_exactly(case: Case) -> None:
    first, second = case.make(), case.make()
    assert case.feed(first, random.Random(7)) == case.feed(second, random.Random(7))
    assert case.observe(first) == case.observe(second)


def _shuffled(x: dict[str, float], rng: random.Random) -> dict[str, float]:
    keys = list(x)
    rng.shuffle(keys)
    return {key: x[key] for key in keys}


@pytest.mark.parametrize("name", FEATURE_CASES)
def test_feature_order_does_not_matter(name: str) -> None:
    case = CASES[name]
    ordered, shuffled = case.make(), case.make()
    data, shuffle = random.Random(4), random.Random(5)
    for _ in range(N_EVENTS):
        x, y = _random_features(data)
        ordered.learn_one(x, y)
        shuffled.learn_one(_shuffled(x, shuffle), y)
    assert [ordered.predict_one(x) for x in PROBES] == [
        shuffled.predict_one(_shuffled(x, shuffle)) for x in PROBES
    ]


@pytest.mark.parametrize("name", FEATURE_CASES)
def test_new_and_missing_features_are_accepted(name: str) -> None:
    case = CASES[name]
    estimator = _trained(case)
    probe = PROBES[0]
    missing = {key: value for key, value in probe.items() if key != "n_view"}
    extra = {**probe, "brand_new": 3.0}
    for x in (missing, extra, {}):
        p = estimator.predict_one(x)
        assert 0.0 <= p <= 1.0 and math.isfinite(p)
    # A feature the model never learned carries no weight, so it changes nothing.
    assert estimator.predict_one(extra) == estimator.predict_one(probe)
    estimator.learn_one(missing, True)
    estimator.learn_one(extra, False)
    estimator.learn_one({}, True)
    assert all(0.0 <= p <= 1.0 for p in estimator.predict_many([missing, extra, probe]))
