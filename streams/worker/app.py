"""The Faust app of intentstream.

Start a worker with ``intentstream worker`` (or ``faust -A streams.worker.app worker``;
both configure it from ``INTENTSTREAM_*`` environment variables). Tests and the
CLI build their own app with :func:`create_app`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import torch

from model.checkpoint import load_checkpoint
from model.serving.catalogue import CatalogueItems, TextCatalogue
from model.serving.scorers import CheckpointScorer
from model.serving.text import TextEncoder
from online_learning.registry import ModelStore
from streams.errors import ConfigurationError
from streams.http.backend import WorkerBackend
from streams.http.latest import LatestLists
from streams.kafka.catalogue_feed import CatalogueFeed
from streams.kafka.model_feed import ModelFeed
from streams.kafka.produce import kafka_producer, send_all
from streams.kafka.security import faust_credentials
from streams.kafka.tables import build_tables
from streams.kafka.topics import build_topics
from streams.kafka.transport import BatchingApp
from streams.metrics.worker import WorkerMetrics
from streams.pipeline.build import build_pipeline
from streams.pipeline.crypto import load_master_key
from streams.pipeline.ledger import LedgerSealer
from streams.pipeline.pseudonyms import Pseudonymizer, load_pseudonym_key
from streams.pipeline.records import OutputRecord
from streams.settings import Settings
from streams.worker.ads import register_ads
from streams.worker.expiry import register_expiry
from streams.worker.handler import register_handler
from streams.worker.shredding import SegmentRoller, register_roller

log = logging.getLogger(__name__)


def faust_options(settings: Settings, *, web_url: str | None = None) -> dict[str, Any]:
    """Faust settings derived from ours (documented in docs/configuration.md).

    Creates the folder Faust keeps its per-app data in (under ``home``, not the
    working directory), since Faust does not create its parent. ``web_url`` is the
    HTTP API's advertised URL: Faust's assignor shares it with the group
    (``canonical_url``), which is how every worker knows the owner of a partition.
    """
    tansu = settings.broker_kind == "tansu"
    (settings.home / "faust").mkdir(parents=True, exist_ok=True)
    return {
        "broker": f"{'tansu' if tansu else 'kafka-batches'}://{settings.bootstrap}",
        "broker_max_poll_records": settings.batch_max,
        "broker_credentials": faust_credentials(settings),
        "store": "memory://",
        # Faust keeps a small folder per app; under home, not the working directory.
        "datadir": str(settings.home / "faust" / "{conf.name}-data"),
        "topic_partitions": settings.partitions,
        "topic_replication_factor": settings.replication_factor,
        "topic_disable_leader": True,
        # Our own HTTP API (streams/http) runs instead: Faust's web server would
        # expose its table views, whose keys are pseudonyms.
        "web_enabled": False,
        **({"canonical_url": web_url} if web_url is not None else {}),
        "consumer_auto_offset_reset": "earliest",
        "producer_linger": 0.005,
        "producer_acks": -1,
        "producer_max_batch_size": 512 * 1024,
        "producer_max_request_size": 8 * 1024 * 1024,
        # Tansu completes a group join only after about half the session timeout.
        "broker_session_timeout": 6.0 if tansu else 10.0,
        "broker_heartbeat_interval": 1.0,
        "broker_rebalance_timeout": 20.0,
    }


def create_app(
    settings: Settings,
    *,
    pseudonym_key: bytes | None = None,
    master_key: bytes | None = None,
    ready: list[asyncio.Event] | None = None,
    metrics: WorkerMetrics | None = None,
    web_url: str | None = None,
) -> WorkerApp:
    """Build a configured app with its topics, tables, batch handler, feeds and API backend.

    Args:
        settings: the one configuration object.
        pseudonym_key: HMAC key; defaults to :func:`load_pseudonym_key`.
        master_key: state master key; defaults to :func:`load_master_key`.
        ready: gets the events that are set once the item catalogue, the model
            announcements, the campaigns and the recent spend have been read to their
            end; the worker waits for all of them before it reports ready.
        metrics: where the app counts what it does (default: a fresh, unserved registry).
        web_url: the HTTP API's advertised URL (:func:`faust_options`).
    """
    key = pseudonym_key if pseudonym_key is not None else load_pseudonym_key(settings)
    master = master_key if master_key is not None else load_master_key(settings)
    app = WorkerApp(settings.app_id, autodiscover=False, **faust_options(settings, web_url=web_url))
    topics = build_topics(app, settings)
    tables = build_tables(app, settings)
    scorer = load_scorer(settings)
    encoder = TextEncoder() if settings.text_search else None
    catalogue = TextCatalogue(dim=encoder.dim) if encoder is not None else None
    items = CatalogueItems()
    pseudonyms = Pseudonymizer(key)
    pipeline = build_pipeline(
        settings,
        pseudonymizer=pseudonyms,
        master_key=master,
        scorer=scorer,
        items=items,
        catalogue=catalogue,
        encode_queries=encoder.encode_many if encoder is not None else None,
    )
    metrics = metrics if metrics is not None else WorkerMetrics()
    ready = ready if ready is not None else []

    async def send(records: list[OutputRecord]) -> None:
        await send_all(kafka_producer(app), records)

    models = ModelFeed(
        settings,
        pipeline=pipeline,
        store=ModelStore(settings.model_store, name=settings.model_name),
        send_dead_letters=send,
        seal=pipeline.answers.seal,
        loaded=asyncio.Event(),
        metrics=metrics,
    )
    roller = SegmentRoller(settings.partitions)
    latest = LatestLists(settings.http_latest_users)
    register_handler(
        app,
        settings=settings,
        topics=topics,
        tables=tables,
        pipeline=pipeline,
        metrics=metrics,
        record_failure=models.record_failure,
        roller=roller,
        latest=latest,
    )
    register_roller(app, tables=tables, roller=roller)
    register_expiry(
        app,
        settings=settings,
        tables=tables,
        ledgers=LedgerSealer(master),
        on_expired=latest.discard,
    )
    app.api = WorkerBackend(
        app,
        events_topic=settings.events_topic,
        pipeline=pipeline,
        tables=tables,
        latest=latest,
        pseudonyms=pseudonyms,
    )
    app.task(models.run)
    ready.append(models.loaded)
    catalogue_feed = CatalogueFeed(
        settings,
        items=items,
        text=(catalogue, encoder) if catalogue is not None and encoder is not None else None,
        send_dead_letters=send,
        seal=pipeline.answers.seal,
        loaded=asyncio.Event(),
    )
    app.task(catalogue_feed.run)
    ready.append(catalogue_feed.loaded)
    register_ads(app, settings=settings, pipeline=pipeline, metrics=metrics, send=send, ready=ready)
    return app


class WorkerApp(BatchingApp):
    """The worker's app, with the backend its HTTP API answers from."""

    api: WorkerBackend


def load_scorer(settings: Settings) -> CheckpointScorer | None:
    """The checkpoint named by ``model_path`` on the GPU when present, else None (baseline).

    Raises:
        ConfigurationError: ``require_dp_models`` is set and the checkpoint is not DP-trained.
    """
    if settings.model_path is None:
        return None
    torch.set_num_threads(settings.scoring_threads)
    checkpoint = load_checkpoint(settings.model_path)
    if settings.require_dp_models and checkpoint.meta.get("privacy") is None:
        raise ConfigurationError(
            f"{checkpoint.path} is not DP-trained and INTENTSTREAM_REQUIRE_DP_MODELS is set: "
            "train it with --dp-epsilon, or unset the requirement"
        )
    log.info("scoring with %s (%s)", checkpoint.meta["version"], checkpoint.path)
    return CheckpointScorer.on_best_device(checkpoint, full_ranking=settings.full_ranking)


def __getattr__(name: str) -> WorkerApp:
    """Build ``app`` on first access, so importing this module reads no environment."""
    if name != "app":
        raise AttributeError(name)
    built = create_app(Settings())
    globals()["app"] = built
    return built
