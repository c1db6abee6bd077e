"""The learner checks each event before learning, speeds up when the stream drifts, forgets
erased users, and records the privacy its versions spent."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

import orjson
import pytest
import torch
from opacus.accountants import RDPAccountant
from prometheus_client import generate_latest

from online_learning.registry import ModelStore
from streams.learner.learner import Learner
from streams.metrics.learner import LearnerMetrics
from streams.ops.status import parse
from streams.pipeline.pseudonyms import Pseudonymizer
from streams.pipeline.records import InputRecord
from streams.settings import Settings
from tests.unit.walks import walks

N = 60
KEY = "learn-test-key-0123456789abcdef"
T0 = 1.7e9


def _event(user: str, session: str, item: str, *, at: float) -> InputRecord:
    """A view of ``item`` as consumed from the events topic, with record time ``at``."""
    event = {
        "event_id": f"{user}-{session}-{item}-{at}",
        "user_id": user,
        "session_id": session,
        "ts": at,
        "type": "view",
        "item_id": item,
    }
    return InputRecord(user.encode(), orjson.dumps(event), "shop.events", 0, 0, at)


def _erasure(user: str, *, at: float) -> InputRecord:
    """An erasure request for ``user`` as consumed from the requests topic, at time ``at``."""
    value = orjson.dumps({"action": "erase", "request_id": f"r-{user}"})
    return InputRecord(user.encode(), value, "shop.privacy.requests", 0, 0, at)


def _values(walks: list[list[int]], first: int) -> list[InputRecord]:
    return [
        _event(f"person-{n}", f"s{n}", f"i{item}", at=T0 + n)
        for n, walk in enumerate(walks, start=first)
        for item in walk
    ]


def test_the_learner_scores_before_learning_and_reacts_to_drift(
    learner_settings: Callable[..., Settings],
) -> None:
    rng = random.Random(0)
    settings = learner_settings(rng, n_items=N, pseudonym_key=KEY)
    learner = Learner(settings, pseudonymizer=Pseudonymizer(KEY.encode()))

    learner.learn(_values(walks(150, rng, n_items=N, step=1), first=0))
    steady = learner.prequential.snapshot()
    assert steady.n == 450 and steady.hr > 0.9  # three checks per 4-click session
    assert learner.drifts == 0 and not learner.due()

    learner.learn(_values(walks(150, rng, n_items=N, step=3), first=1000))  # the stream changes
    assert learner.drifts >= 1
    assert learner.due()  # publish now, not in an hour
    assert learner.trainer.update_every == 8  # 4x as often

    # The drift is a metric too, beside what the learner has learned.
    metrics = LearnerMetrics()
    metrics.record(learner.stats(), busy_seconds=2.0)
    exported = parse("learner", generate_latest(metrics.registry).decode())
    assert exported.value("intentstream_drift_detections_total", role="learner") == learner.drifts
    assert exported.value("intentstream_learn_examples_total") == learner.trainer.examples > 0
    assert exported.value("intentstream_learn_busy_seconds_total") == 2.0
    assert exported.value("intentstream_online_checked_events_total", role="learner") == 900
    assert exported.value("intentstream_learn_dp_stopped") == 0.0


def _publish(learner: Learner, settings: Settings) -> str:
    """What ``Learner.publish`` stores, made current, without a broker to announce on."""
    checkpoint, metrics = learner.snapshot()
    store = ModelStore(settings.model_store)
    info = store.publish(
        checkpoint, parent=learner.version, metrics=metrics, privacy=learner.privacy()
    )
    store.set_current(info.version)
    return info.version


def _rdp_epsilon(history: list[tuple[float, float, int]], delta: float) -> float:
    accountant = RDPAccountant()
    accountant.history = history
    return float(accountant.get_epsilon(delta))


def test_a_restart_composes_epsilon_and_delta_over_the_lineage_not_adds_epsilon_keeps_delta(
    learner_settings: Callable[..., Settings],
) -> None:
    rng = random.Random(1)
    settings = learner_settings(
        rng,
        n_items=N,
        epochs=1,
        privacy={"epsilon": 1.0, "delta": 1e-6, "accountant": "prv", "unit": "session"},
        pseudonym_key=KEY,
        learn_dp_noise_multiplier=2.0,
        learn_dp_sample_rate=0.5,
        learn_dp_pool_updates=2,
        learn_dp_epsilon_per_window=100.0,
        learn_update_every=16,
    )
    root = ModelStore(settings.model_store).current()
    first = Learner(settings, pseudonymizer=Pseudonymizer(KEY.encode()))
    first.learn(_values(walks(60, rng, n_items=N, step=1), first=0))
    one = first.trainer.privacy_spent()
    assert one is not None and one["steps"] > 0 and first.lineage == root
    child = _publish(first, settings)

    again = Learner(settings, pseudonymizer=Pseudonymizer(KEY.encode()))  # a restart
    restored = again.trainer.privacy_spent()
    assert again.lineage == root and restored is not None
    assert restored["accountant_history"] == [[2.0, 0.5, one["steps"]]]
    assert restored["epsilon"] == pytest.approx(one["epsilon"])
    again.learn(_values(walks(60, rng, n_items=N, step=1), first=1000))
    two = again.trainer.privacy_spent()
    assert two is not None and two["steps"] > one["steps"]
    steps = two["steps"]
    assert two["epsilon"] == pytest.approx(_rdp_epsilon([(2.0, 0.5, steps)], 1e-6), rel=1e-9)
    alone = _rdp_epsilon([(2.0, 0.5, steps - one["steps"])], 1e-6)
    assert two["epsilon"] < one["epsilon"] + alone  # composed, not added
    privacy = again.privacy()
    assert privacy is not None and privacy["base"]["version"] == root
    # The root's (1, 1e-6) plus the lineage's (epsilon, 1e-6): the restart adds no delta.
    assert privacy["epsilon"] == pytest.approx(1.0 + two["epsilon"])
    assert privacy["delta"] == pytest.approx(2e-6)
    _publish(again, settings)

    # A rollback to the first child forks the lineage: the other branch's steps still count.
    ModelStore(settings.model_store).set_current(child)
    forked = Learner(settings, pseudonymizer=Pseudonymizer(KEY.encode()))
    spent = forked.trainer.privacy_spent()
    assert forked.lineage == root and spent is not None and spent["steps"] == steps


def test_at_the_lifetime_cap_the_learner_stops_learning_and_keeps_checking(
    learner_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    rng = random.Random(7)
    cap = (_rdp_epsilon([(1.0, 1.0, 4)], 1e-6) + _rdp_epsilon([(1.0, 1.0, 5)], 1e-6)) / 2
    settings = learner_settings(
        rng,
        n_items=N,
        epochs=1,
        pseudonym_key=KEY,
        learn_dp_noise_multiplier=1.0,
        learn_dp_sample_rate=1.0,
        learn_dp_pool_updates=1,
        learn_dp_epsilon=cap,  # one update of 4 steps
        learn_dp_epsilon_per_window=100.0,
        learn_update_every=8,
    )
    learner = Learner(settings, pseudonymizer=Pseudonymizer(KEY.encode()))
    learner.learn(_values(walks(40, rng, n_items=N, step=1), first=0))
    spent = learner.trainer.privacy_spent()
    assert spent is not None and spent["steps"] == 4 and spent["epsilon"] <= cap
    assert not learner.trainer.learning and learner.trainer.updates == 1
    metrics = LearnerMetrics()
    metrics.record(learner.stats(), busy_seconds=1.0)
    assert metrics.registry.get_sample_value("intentstream_learn_dp_stopped") == 1.0
    weights = [p.detach().clone() for p in learner.trainer.model.parameters()]
    checked = learner.prequential.snapshot().n
    learner.learn(_values(walks(40, rng, n_items=N, step=1), first=500))  # no error
    assert learner.prequential.snapshot().n > checked  # still checking what it serves
    after = list(learner.trainer.model.parameters())
    assert all(torch.equal(w, p) for w, p in zip(weights, after, strict=True))
    _publish(learner, settings)

    with caplog.at_level(logging.WARNING, logger="streams.learner.learner"):
        again = Learner(settings, pseudonymizer=Pseudonymizer(KEY.encode()))  # no error
    assert not again.trainer.learning
    assert any("DP budget of lineage" in r.message for r in caplog.records)
    again.learn(_values(walks(40, rng, n_items=N, step=1), first=900))
    assert again.trainer.updates == 0 and not again.due()  # nothing new to publish


def test_an_erased_user_is_forgotten_and_their_older_events_never_learned(
    learner_settings: Callable[..., Settings],
) -> None:
    settings = learner_settings(
        random.Random(2), n_items=N, epochs=1, pseudonym_key=KEY, learn_update_every=4
    )
    learner = Learner(settings, pseudonymizer=Pseudonymizer(KEY.encode()))
    learner.learn(
        [
            _event("victim", "s1", "i1", at=T0),
            _event("victim", "s1", "secret", at=T0 + 1),  # pending, with a new item
            _event("other", "s2", "i2", at=T0 + 2),
            _event("other", "s2", "fresh", at=T0 + 3),
        ]
    )
    assert learner.forget([_erasure("victim", at=T0 + 10), _erasure("nobody", at=T0 + 10)]) == 2
    learner.learn(
        [
            _event("victim", "s1", "late", at=T0 + 9),  # read after the erasure, sent before it
            _event("victim", "s1", "late2", at=T0 + 10),
            _event("victim", "s3", "i3", at=T0 + 11),  # after the erasure: learned again
            _event("victim", "s3", "comeback", at=T0 + 12),
            *[
                _event("other", f"s{n}", f"i{n + k}", at=T0 + 20 + n)
                for n in range(4, 8)
                for k in (0, 1)
            ],
        ]
    )
    assert learner.dropped_erased == 2 and learner.trainer.updates >= 1
    vocab = learner.snapshot()[0].vocab.ids
    assert "fresh" in vocab and "comeback" in vocab
    assert not {"secret", "late", "late2"} & set(vocab)


def test_with_dp_sgd_a_version_records_its_base_spend_plus_the_learners(
    learner_settings: Callable[..., Settings],
) -> None:
    base = {"epsilon": 1.0, "delta": 1e-6, "accountant": "prv", "unit": "session"}
    settings = learner_settings(
        random.Random(3),
        n_items=N,
        epochs=1,
        privacy=base,
        pseudonym_key=KEY,
        learn_dp_noise_multiplier=5.0,
        learn_update_every=16,
    )
    learner = Learner(settings, pseudonymizer=Pseudonymizer(KEY.encode()))
    learner.learn(_values(walks(40, random.Random(4), n_items=N, step=1), first=0))
    learner.learn([_event("shopper", "s1", "i1", at=T0), _event("shopper", "s1", "new", at=T0)])
    spent = learner.trainer.privacy_spent()
    assert spent is not None and spent["steps"] > 0
    privacy = learner.privacy()
    assert privacy is not None
    assert privacy["epsilon"] == pytest.approx(1.0 + spent["epsilon"])
    assert privacy["delta"] == pytest.approx(2e-6) and privacy["accountant"] == "rdp"
    assert privacy["base"]["version"] == learner.version
    # Under DP-SGD no item of the sessions joins the vocabulary: it is the base version's.
    assert "new" not in learner.snapshot()[0].vocab.ids

    plain = Learner(
        settings.model_copy(update={"learn_dp_noise_multiplier": None}),
        pseudonymizer=Pseudonymizer(KEY.encode()),
    )
    assert plain.privacy() is None  # not DP-trained: marked with privacy null


def test_dp_sgd_from_a_version_that_is_not_dp_trained_is_not_dp_trained_either(
    learner_settings: Callable[..., Settings],
) -> None:
    settings = learner_settings(
        random.Random(5),
        n_items=N,
        epochs=1,
        pseudonym_key=KEY,
        learn_dp_noise_multiplier=5.0,
        learn_update_every=16,
    )
    learner = Learner(settings, pseudonymizer=Pseudonymizer(KEY.encode()))
    learner.learn(_values(walks(40, random.Random(6), n_items=N, step=1), first=0))
    assert learner.trainer.privacy_spent() is not None and learner.privacy() is None


def test_events_dated_further_ahead_than_the_settings_allow_are_not_learned(
    learner_settings: Callable[..., Settings],
) -> None:
    settings = learner_settings(
        random.Random(3),
        n_items=N,
        epochs=1,
        pseudonym_key=KEY,
        learn_update_every=4,
        ts_future_tolerance_seconds=10.0,
    )
    learner = Learner(settings, pseudonymizer=Pseudonymizer(KEY.encode()))
    ahead = [
        r._replace(value=r.value.replace(b'"ts":1700000000.0', b'"ts":1700000060.0'))
        for r in (_event("x", "s9", "ahead-1", at=T0), _event("x", "s9", "ahead-2", at=T0))
    ]
    assert all(b"1700000060.0" in r.value for r in ahead)
    learner.learn(
        [
            *ahead,
            *[_event("y", f"s{n}", f"i{n + k}", at=T0 + n) for n in range(4) for k in (0, 1)],
        ]
    )
    assert learner.trainer.updates >= 1
    vocab = set(learner.snapshot()[0].vocab.ids)
    assert "i1" in vocab and not {"ahead-1", "ahead-2"} & vocab
