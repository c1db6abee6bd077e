"""The learner checks each event before learning, and speeds up when the stream drifts."""

from __future__ import annotations

import random
from collections.abc import Callable

import orjson
import pytest
from prometheus_client import generate_latest

from online_learning.registry import ModelStore
from streams.errors import ConfigurationError
from streams.learner.learner import Learner
from streams.metrics.learner import LearnerMetrics
from streams.ops.status import parse
from streams.pipeline.pseudonyms import Pseudonymizer
from streams.settings import Settings
from tests.unit.walks import walks

N = 60
KEY = "learn-test-key-0123456789abcdef"


def _values(walks: list[list[int]], first: int) -> list[bytes | None]:
    values: list[bytes | None] = []
    for n, walk in enumerate(walks, start=first):
        for j, item in enumerate(walk):
            event = {
                "event_id": f"e{n}-{j}",
                "user_id": f"person-{n}",
                "session_id": f"s{n}",
                "ts": 1.7e9 + n,
                "type": "view",
                "item_id": f"i{item}",
            }
            values.append(orjson.dumps(event))
    return values


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
    assert exported.value("intentstream_online_checked_events", role="learner") == 900


def test_with_dp_sgd_the_spend_is_published_and_survives_a_restart(
    learner_settings: Callable[..., Settings],
) -> None:
    rng = random.Random(1)
    settings = learner_settings(
        rng,
        n_items=N,
        epochs=1,
        pseudonym_key=KEY,
        learn_dp_noise_multiplier=5.0,
        learn_dp_epsilon=8.0,
        learn_update_every=16,
    )
    learner = Learner(settings, pseudonymizer=Pseudonymizer(KEY.encode()))
    learner.learn(_values(walks(80, rng, n_items=N, step=1), first=0))
    spent = learner.trainer.privacy_spent()
    assert spent is not None and 0 < spent["epsilon"] <= 8.0
    checkpoint, metrics = learner.snapshot()
    assert metrics["stream_epsilon"] == spent["epsilon"]
    store = ModelStore(settings.model_store)  # what publish does, without a broker to announce on
    child = store.publish(checkpoint, parent=learner.version, metrics=metrics, privacy=None).version
    store.set_current(child)

    again = Learner(settings, pseudonymizer=Pseudonymizer(KEY.encode()))  # a restart
    assert again.version == child and again.prior_epsilon == spent["epsilon"]
    budget = again.trainer.privacy_spent()
    assert budget is not None and budget["budget"] == 8.0 - spent["epsilon"]
    with pytest.raises(ConfigurationError, match="DP budget"):
        Learner(
            settings.model_copy(update={"learn_dp_epsilon": spent["epsilon"]}),
            pseudonymizer=Pseudonymizer(KEY.encode()),
        )
