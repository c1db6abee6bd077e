"""A worker serves only signed (and, if asked, DP-trained) versions, and keeps its probation
verdicts to itself."""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Callable
from pathlib import Path

import fastjsonschema
import orjson
import pytest
from prometheus_client import generate_latest

from model.checkpoint import load_checkpoint
from model.serving.scorers import CheckpointScorer
from online_learning.announcement import Announcement
from online_learning.registry import ModelStore
from online_learning.signing import AnnouncementSigner
from streams.kafka.model_feed import ModelFeed
from streams.metrics.worker import WorkerMetrics
from streams.ops.status import Scrape, parse
from streams.pipeline.batch import EventPipeline
from streams.pipeline.build import build_pipeline
from streams.pipeline.monitor import ProbationFailure
from streams.pipeline.pseudonyms import Pseudonymizer
from streams.pipeline.records import InputRecord
from streams.pipeline.validation import load_schema
from streams.settings import Settings

KEY = "model-feed-test-pseudonym-key-0123"
METRICS = {"P@20": 51.0, "MRR@20": 18.0, "HR@10": 40.0, "NDCG@10": 21.0}
PRIVACY = {"epsilon": 0.9, "delta": 1e-5, "max_grad_norm": 1.0, "unit": "session"}
SIGNER = AnnouncementSigner(bytes(32))


@dataclasses.dataclass
class Feed:
    """A worker's model feed, its pipeline and metrics, and a store of two DP versions."""

    follower: ModelFeed
    pipeline: EventPipeline
    store: ModelStore
    metrics: WorkerMetrics
    announced: list[Announcement]

    def apply(self, *values: bytes) -> None:
        """Feed announcement record values to the worker, as its consumer would."""
        records = [InputRecord(b"k", v, "models", 0, n, 0.0) for n, v in enumerate(values)]
        asyncio.run(self.follower.apply(records))

    def exported(self) -> Scrape:
        return parse("worker", generate_latest(self.metrics.registry).decode())

    def swaps(self, outcome: str) -> float:
        return self.exported().value("intentstream_model_swaps_total", outcome=outcome)

    def served(self, name: str) -> dict[str, float]:
        """``version -> value`` of a per-version gauge of the serving model."""
        return self.exported().labelled(name, "version")


@pytest.fixture
def make_feed(tmp_path: Path, tiny_checkpoint: Callable[..., Path]) -> Callable[..., Feed]:
    """``make_feed(**settings)``: a fresh worker feed beside a store of two versions, the
    second current, both DP-trained; nothing announced yet."""

    def make(**overrides: object) -> Feed:
        settings = Settings(
            pseudonym_key=KEY,
            text_search=False,
            model_store=tmp_path / "store",
            **overrides,  # type: ignore[arg-type]
        )
        store = ModelStore(settings.model_store, name=settings.model_name)
        announced: list[Announcement] = []
        for seed in (1, 2):
            parent = announced[-1].version if announced else None
            run = tiny_checkpoint(tmp_path / f"run{seed}", seed=seed)
            announced.append(store.publish(run, parent=parent, metrics=METRICS, privacy=PRIVACY))
            store.set_current(announced[-1].version)
        pipeline = build_pipeline(
            settings, pseudonymizer=Pseudonymizer(KEY.encode()), master_key=bytes(32)
        )
        metrics = WorkerMetrics()
        follower = ModelFeed(
            settings,
            pipeline=pipeline,
            store=store,
            send_dead_letters=_nothing,
            seal=pipeline.answers.seal,
            loaded=asyncio.Event(),
            metrics=metrics,
            signer=SIGNER,
        )
        return Feed(follower, pipeline, store, metrics, announced)

    return make


async def _nothing(records: object) -> None:
    return None


def _scorer(store: ModelStore, version: str) -> CheckpointScorer:
    return CheckpointScorer(load_checkpoint(store.path(version)))


def test_a_probation_failure_stays_with_the_worker_that_saw_it(
    make_feed: Callable[..., Feed],
) -> None:
    feed = make_feed()
    first, second = (a.version for a in feed.announced)
    feed.pipeline.use_scorer(_scorer(feed.store, first))
    feed.pipeline.use_scorer(_scorer(feed.store, second), probation=True)
    feed.pipeline.use_scorer(_scorer(feed.store, first))  # what the pipeline does on a failure
    feed.follower.record_failure(ProbationFailure(second, first, "HR@10 fell"))
    # Other workers judge for themselves: the store still offers the version to them.
    assert feed.store.current() == second
    assert {info.version: info.status for info in feed.store.versions()}[second] == "accepted"
    assert list(feed.follower.rejected) == [second]
    assert feed.swaps("failed_probation") == 1
    assert feed.pipeline.ranker.primary.version == first


def test_only_a_signed_announcement_is_served(make_feed: Callable[..., Feed]) -> None:
    feed = make_feed()
    _, second = feed.announced
    forged = dataclasses.replace(second, signature="0" * 64)
    other_key = AnnouncementSigner(bytes(range(32))).sign(second)
    tampered = dataclasses.replace(SIGNER.sign(second), privacy=None)
    feed.apply(second.to_bytes(), forged.to_bytes(), other_key.to_bytes(), tampered.to_bytes())
    assert feed.pipeline.ranker.primary.version != second.version  # still the baseline
    assert feed.swaps("rejected") == 4 and list(feed.follower.rejected) == [second.version] * 4

    feed.apply(SIGNER.sign(second).to_bytes())
    assert feed.pipeline.ranker.primary.version == second.version
    assert feed.swaps("loaded") == 1


def test_a_signed_announcement_whose_files_changed_is_refused(
    make_feed: Callable[..., Feed],
) -> None:
    feed = make_feed()
    first, second = feed.announced
    # Someone with write access to the store swaps the second version's files for the first's.
    for name in ("weights.pt", "vocab.json", "MANIFEST.json"):
        (feed.store.path(second.version) / name).write_bytes(
            (feed.store.path(first.version) / name).read_bytes()
        )
    feed.apply(SIGNER.sign(second).to_bytes())
    assert feed.pipeline.ranker.primary.version != second.version
    assert feed.swaps("rejected") == 1
    assert feed.store.info(second.version).status == "accepted"  # the worker only reads


def test_with_require_dp_models_a_version_that_is_not_dp_trained_is_refused(
    make_feed: Callable[..., Feed], tmp_path: Path, tiny_checkpoint: Callable[..., Path]
) -> None:
    feed = make_feed(require_dp_models=True)
    first, _ = feed.announced
    run = tiny_checkpoint(tmp_path / "plain", seed=3)
    plain = feed.store.publish(run, parent=first.version, metrics={}, privacy=None)
    feed.apply(SIGNER.sign(first).to_bytes(), SIGNER.sign(plain).to_bytes())
    assert feed.pipeline.ranker.primary.version == first.version
    assert list(feed.follower.rejected) == [plain.version]
    assert feed.swaps("rejected") == 1 and feed.swaps("loaded") == 1


def test_the_served_versions_epsilon_is_exported_when_it_becomes_current(
    make_feed: Callable[..., Feed], tmp_path: Path, tiny_checkpoint: Callable[..., Path]
) -> None:
    feed = make_feed()  # by default a version that is not DP-trained is served, and flagged
    first, _ = feed.announced
    run = tiny_checkpoint(tmp_path / "plain", seed=3)
    plain = feed.store.publish(run, parent=first.version, metrics={}, privacy=None)
    feed.apply(SIGNER.sign(first).to_bytes())
    assert feed.served("intentstream_model_epsilon") == {first.version: 0.9}
    assert feed.served("intentstream_model_private") == {first.version: 1.0}
    feed.apply(SIGNER.sign(plain).to_bytes())
    assert feed.pipeline.ranker.primary.version == plain.version
    assert feed.served("intentstream_model_epsilon") == {plain.version: math.inf}
    assert feed.served("intentstream_model_private") == {plain.version: 0.0}


def test_a_signed_announcement_fits_the_published_schema(make_feed: Callable[..., Feed]) -> None:
    signed = SIGNER.sign(make_feed().announced[0])
    value = orjson.loads(signed.to_bytes())
    assert value["manifest"] == signed.manifest and value["privacy"]["epsilon"] == 0.9
    check = fastjsonschema.compile(load_schema("schemas/model_announcement.schema.json"))
    assert check(value) == value
    with pytest.raises(fastjsonschema.JsonSchemaValueException):
        check({**value, "signature": "not hex"})
