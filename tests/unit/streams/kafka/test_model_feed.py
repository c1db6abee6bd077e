"""A worker that rejects a version on probation also takes CURRENT back from it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from model.checkpoint import load_checkpoint
from model.serving.ranker import CheckpointScorer
from online_learning.registry import ModelStore
from streams.kafka.model_feed import ModelFeed
from streams.metrics.worker import WorkerMetrics
from streams.pipeline.batch import EventPipeline
from streams.pipeline.build import build_pipeline
from streams.pipeline.monitor import ProbationFailure
from streams.pipeline.pseudonyms import Pseudonymizer
from streams.settings import Settings

KEY = "model-feed-test-pseudonym-key-0123"
METRICS = {"P@20": 51.0, "MRR@20": 18.0, "HR@10": 40.0, "NDCG@10": 21.0}
PRIVACY = {"epsilon": 0.9, "delta": 1e-5, "max_grad_norm": 1.0, "unit": "session"}
Feed = tuple[ModelFeed, EventPipeline, ModelStore, list[str]]


async def _nothing(records: object) -> None:
    return None


@pytest.fixture
def feed(tmp_path: Path, tiny_checkpoint: Callable[..., Path]) -> Feed:
    """A worker's model feed, its pipeline, and a store of two versions, the second current."""
    settings = Settings(pseudonym_key=KEY, text_search=False, model_store=tmp_path / "store")
    store = ModelStore(settings.model_store, name=settings.model_name)
    versions: list[str] = []
    for seed in (1, 2):
        parent = versions[-1] if versions else None
        run = tiny_checkpoint(tmp_path / f"run{seed}", seed=seed)
        versions.append(store.publish(run, parent=parent, metrics=METRICS, privacy=PRIVACY).version)
        store.set_current(versions[-1])
    pipeline = build_pipeline(
        settings, pseudonymizer=Pseudonymizer(KEY.encode()), master_key=bytes(32)
    )
    follower = ModelFeed(
        settings,
        pipeline=pipeline,
        store=store,
        send_dead_letters=_nothing,
        seal=pipeline.answers.seal,
        loaded=asyncio.Event(),
        metrics=WorkerMetrics(),
    )
    return follower, pipeline, store, versions


def _scorer(store: ModelStore, version: str) -> CheckpointScorer:
    return CheckpointScorer(load_checkpoint(store.path(version)))


def test_a_version_that_fails_probation_is_rejected_and_current_goes_back(feed: Feed) -> None:
    follower, pipeline, store, (first, second) = feed
    pipeline.use_scorer(_scorer(store, first))
    pipeline.use_scorer(_scorer(store, second), probation=True)
    pipeline.use_scorer(_scorer(store, first))  # what the pipeline does on a failed probation
    follower.record_failure(ProbationFailure(second, first, "HR@10 fell"))
    assert store.current() == first
    assert {info.version: info.status for info in store.versions()}[second] == "rejected"
    assert follower.rejected == [second]


def test_current_stays_when_the_learner_has_moved_on(feed: Feed) -> None:
    follower, pipeline, store, (first, second) = feed
    store.set_current(first)  # say a newer version is current by the time this one fails
    pipeline.use_scorer(_scorer(store, first))
    follower.record_failure(ProbationFailure(second, first, "HR@10 fell"))
    assert store.current() == first


def test_current_stays_when_the_worker_fell_back_to_the_baseline(feed: Feed) -> None:
    follower, pipeline, store, (_, second) = feed
    baseline = pipeline.ranker.fallback.version  # the baseline is not in the store
    follower.record_failure(ProbationFailure(second, baseline, "HR@10 fell"))
    assert store.current() == second
    assert {info.version: info.status for info in store.versions()}[second] == "rejected"
