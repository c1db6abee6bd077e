"""The demo's model: trained on the first part of the log only, then published and announced."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from online_learning.registry import ModelStore
from streams.ops.demo import BUNDLED_FILE
from streams.ops.demo_model import DemoTraining
from streams.ops.event_log import read_events
from streams.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

HISTORY = 3_000


def test_the_demo_model_learns_from_the_history_only_and_is_announced(
    kafka_bootstrap: str,
    make_settings: Callable[..., Settings],
    read_topic: Callable[..., list],
    tmp_path: Path,
) -> None:
    settings = make_settings(kafka_bootstrap, "kafka", model_store=tmp_path / "store")
    training = DemoTraining(settings, BUNDLED_FILE, tmp_path / "run", events=HISTORY)
    version = asyncio.run(training.served_version())
    store = ModelStore(settings.model_store, name=settings.model_name)
    assert version is not None and store.current() == version, tmp_path / "run/train.log"
    [announced] = read_topic(settings.bootstrap, settings.models_topic, count=1)
    assert version.encode() in announced.value
    checkpoint = store.load(version)
    history = {e["item_id"] for e in read_events(BUNDLED_FILE, limit=HISTORY) if "item_id" in e}
    # The live part of the log is what the demo judges the model on: it never saw it.
    assert set(checkpoint.vocab.ids[1:]) <= history
    assert checkpoint.ranking is not None  # the served ranker's mix, chosen on validation


def test_a_demo_model_that_cannot_train_leaves_the_baseline_serving_and_says_why(
    kafka_bootstrap: str, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(kafka_bootstrap, "kafka", model_store=tmp_path / "store")
    training = DemoTraining(settings, tmp_path / "missing.csv", tmp_path / "run", events=10)
    assert asyncio.run(training.served_version()) is None
    assert ModelStore(settings.model_store, name=settings.model_name).current() is None
    assert "missing.csv" in (tmp_path / "run" / "train.log").read_text()
