"""The online intent model and its features."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from online_learning.intent import (
    EVENT_TYPES,
    INTENT_FEATURES,
    CellIntent,
    IntentModel,
    intent_cell,
    intent_features,
)
from streams.pipeline import state as stream_features

CART = EVENT_TYPES.index("add_to_cart")
VIEW = EVENT_TYPES.index("view")


def _features(
    *,
    last_type: int = VIEW,
    session_carts: int = 1,
    session_seconds: float = 600.0,
    idle_seconds: float = 30.0,
) -> dict[str, float]:
    return intent_features(
        [2, 1, 0, 1, 0],
        session_events=4,
        session_carts=session_carts,
        distinct_items=3,
        last_type=last_type,
        session_seconds=session_seconds,
        idle_seconds=idle_seconds,
    )


def test_event_types_match_the_stream() -> None:
    assert EVENT_TYPES == stream_features.EVENT_TYPES


def test_features_are_log_counts_and_a_dense_one_hot() -> None:
    x = _features(last_type=CART)
    assert list(x) == list(INTENT_FEATURES)
    assert x["n_view"] == math.log1p(2) and x["n_purchase"] == 0.0
    assert x["session_events"] == math.log1p(4)
    assert x["session_carts"] == math.log1p(1)
    assert x["distinct_items"] == math.log1p(3)
    assert x["session_minutes"] == math.log1p(10.0)
    assert x["idle_minutes"] == math.log1p(0.5)
    assert [x[f"last_{kind}"] for kind in EVENT_TYPES] == [0.0, 0.0, 0.0, 1.0, 0.0]


def test_no_last_event_gives_an_all_zero_one_hot() -> None:
    x = _features(last_type=-1)
    assert all(x[f"last_{kind}"] == 0.0 for kind in EVENT_TYPES)


def test_unknown_durations_are_left_out() -> None:
    x = intent_features(
        [1, 0, 0, 0, 0], session_events=1, session_carts=0, distinct_items=1, last_type=VIEW
    )
    assert "session_minutes" not in x and "idle_minutes" not in x


def test_out_of_order_events_count_as_zero_duration() -> None:
    x = _features(session_seconds=-120.0, idle_seconds=-5.0)
    assert x["session_minutes"] == 0.0 and x["idle_minutes"] == 0.0


@pytest.mark.parametrize(
    ("counts", "last_type"), [([1, 0, 0, 0], VIEW), ([1, 0, 0, 0, 0], 5), ([1, 0, 0, 0, 0], -2)]
)
def test_bad_feature_inputs_raise(counts: list[int], last_type: int) -> None:
    with pytest.raises(ValueError):
        intent_features(
            counts, session_events=1, session_carts=0, distinct_items=1, last_type=last_type
        )


def test_last_type_one_hot_reaches_the_model_regression() -> None:
    """bench/intent.py used to emit only ``last_<type>: 1.0``: the scaler saw each
    key with zero variance, mapped it to 0, and the model could not use it."""
    model = IntentModel()
    for _ in range(300):
        model.learn_many([_features(last_type=CART), _features(last_type=VIEW)], [True, False])
    assert model.predict_one(_features(last_type=CART)) > 0.9
    assert model.predict_one(_features(last_type=VIEW)) < 0.1


def test_model_ranks_a_learnable_signal() -> None:
    rng = random.Random(0)
    model = IntentModel()
    cases = []
    for _ in range(3000):
        carts = rng.randrange(4)
        x = _features(session_carts=carts, last_type=rng.randrange(len(EVENT_TYPES)))
        cases.append((x, rng.random() < 0.05 + 0.25 * carts))
    for x, y in cases[:2000]:
        model.learn_one(x, y)
    scores = model.predict_many([x for x, _ in cases[2000:]])
    labels = [y for _, y in cases[2000:]]
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    auc = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))
    assert auc > 0.75


def test_predicting_learns_nothing() -> None:
    model = IntentModel()
    model.learn_one(_features(), True)
    before = model.predict_one(_features(last_type=CART))
    model.predict_many([{**_features(session_carts=9), "brand_new": 1.0}] * 5)
    assert model.predict_one(_features(last_type=CART)) == before


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_features_raise(value: float) -> None:
    model = IntentModel()
    with pytest.raises(ValueError, match="n_view"):
        model.learn_one({"n_view": value, "n_click": 1.0}, True)
    with pytest.raises(ValueError):
        model.predict_one({"n_view": value})


def test_batches_must_have_one_label_per_case() -> None:
    with pytest.raises(ValueError):
        IntentModel().learn_many([_features()], [True, False])


@pytest.mark.parametrize("kwargs", [{"lr": 0.0}, {"lr": -1.0}, {"l2": -0.1}])
def test_bad_hyperparameters_raise(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        IntentModel(**kwargs)


_case = st.tuples(
    st.lists(st.integers(0, 20), min_size=5, max_size=5),
    st.integers(-1, len(EVENT_TYPES) - 1),
    st.booleans(),
)


@settings(max_examples=30, deadline=None)
@given(batch=st.lists(_case, max_size=30), split=st.integers(0, 30))
def test_batched_equals_one_by_one(batch: list[tuple[list[int], int, bool]], split: int) -> None:
    xs = [
        intent_features(
            counts,
            session_events=sum(counts),
            session_carts=counts[CART],
            distinct_items=counts[VIEW],
            last_type=last,
            session_seconds=float(sum(counts) * 40),
        )
        for counts, last, _ in batch
    ]
    ys = [y for _, _, y in batch]
    one, many = IntentModel(), IntentModel()
    for x, y in zip(xs, ys, strict=True):
        one.learn_one(x, y)
    many.learn_many(xs[:split], ys[:split])  # two uneven batches
    many.learn_many(xs[split:], ys[split:])
    assert many.predict_many(xs).tolist() == [one.predict_one(x) for x in xs]


def test_cell_intent_fits_the_released_rates_and_waits_for_enough_cases() -> None:
    carts_buy, others_buy = 30, 3
    released = [
        (intent_cell(kind, length, carts), purchased, count)
        for kind in range(5)
        for length in range(1, 20, 4)
        for carts in range(4)
        for purchased, count in (
            (False, 200),
            (True, carts_buy if kind == 3 else others_buy),
        )
    ]
    intent = CellIntent(min_weight=2 * sum(count for *_, count in released))
    intent.learn_released(released)
    assert intent.predict(intent_cell(3, 2, 1)) is None  # not enough cases yet
    intent.learn_released(released)  # a second window with the same counts
    assert intent.predict(intent_cell(3, 2, 1)) == pytest.approx(30 / 230, abs=0.01)
    assert intent.predict(intent_cell(0, 9, 0)) == pytest.approx(3 / 203, abs=0.01)


def test_cell_intent_refits_at_most_once_per_interval() -> None:
    now = [0.0]
    intent = CellIntent(min_weight=1, refit_seconds=5.0, clock=lambda: now[0])
    intent.learn_released([("3.1.1", True, 50), ("3.1.1", False, 50)])
    first = intent.predict("3.1.1")
    assert first == pytest.approx(0.5, abs=0.05)
    intent.learn_released([("3.1.1", False, 900)])  # now mostly no purchase
    assert intent.predict("3.1.1") == first  # within the interval: no refit yet
    now[0] = 5.0
    later = intent.predict("3.1.1")
    assert later is not None and later < 0.2
