"""Model releases: a version stored, announced on ``shop.models``, then made current.

``CURRENT`` changes only once the broker has acknowledged the announcement, so a
failed release leaves it as it was. Used by ``intentstream model publish|rollback``
and by the learner.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import aiokafka.errors
import kafka.errors

from model.checkpoint import Checkpoint
from online_learning.registry import Announcement, ModelStore, checkpoint_meta
from streams.errors import BrokerError
from streams.kafka.admin import ensure_topics
from streams.kafka.produce import produce_records
from streams.settings import Settings

log = logging.getLogger(__name__)

#: How long an announcement may take to be acknowledged, connection included.
ANNOUNCE_TIMEOUT_SECONDS = 30.0


def store_of(settings: Settings) -> ModelStore:
    """The model store the settings name."""
    return ModelStore(settings.model_store, name=settings.model_name)


def publish(settings: Settings, checkpoint: Path, *, parent: str | None) -> Announcement:
    """Import a training checkpoint into the store, announce it, then make it current.

    Its metrics and privacy spend come from the checkpoint's ``meta.json``.

    Raises:
        OnlineLearningError: the checkpoint is not readable or does not load.
        BrokerError: the announcement was not acknowledged; the version stays
            in the store, not current (``model rollback`` it to retry).
    """
    store = store_of(settings)
    meta = checkpoint_meta(checkpoint)
    announcement = store.publish(
        checkpoint,
        parent=parent,
        metrics=meta.get("metrics") or {},
        privacy=meta.get("privacy"),
    )
    _announce_and_set_current(settings, store, announcement)
    return announcement


def publish_update(
    settings: Settings,
    checkpoint: Checkpoint,
    *,
    parent: str | None,
    metrics: dict[str, float],
    privacy: dict[str, Any] | None,
) -> Announcement:
    """Store a model the learner updated, announce it, then make it current.

    Raises:
        OnlineLearningError: the model does not load back from the store.
        BrokerError: the announcement was not acknowledged; ``CURRENT`` is unchanged.
    """
    store = store_of(settings)
    announcement = store.publish(checkpoint, parent=parent, metrics=metrics, privacy=privacy)
    _announce_and_set_current(settings, store, announcement)
    return announcement


def rollback(settings: Settings, version: str) -> Announcement:
    """Serve ``version`` again: verify it, announce it, then point ``CURRENT`` at it.

    Raises:
        UnknownVersion: it is not in the store.
        ModelRejected: it was rejected or fails verification (now marked rejected).
        BrokerError: the announcement was not acknowledged; ``CURRENT`` is unchanged.
    """
    store = store_of(settings)
    store.verify(version)
    announcement = store.announcement(version)
    _announce_and_set_current(settings, store, announcement)
    return announcement


def _announce_and_set_current(
    settings: Settings, store: ModelStore, announcement: Announcement
) -> None:
    # CURRENT first: a version that was announced, and so maybe served, must be the
    # one a restarted learner goes on from, or the privacy its updates spent would
    # not be counted in what follows. A crash in between leaves CURRENT on a version
    # no worker was told about, which the learner's next version (its child) repairs.
    # (The very first version has nothing to go back to, so it is made current after.)
    previous = store.current()
    if previous is not None:
        store.set_current(announcement.version, verify=False)
    try:
        announce(settings, announcement)
    except BrokerError:
        if previous is not None:  # never released: as if it had not been published
            store.set_current(previous, verify=False)
        raise
    store.set_current(announcement.version, verify=False)
    log.info("announced %s on %s", announcement.version, settings.models_topic)


def announce(settings: Settings, announcement: Announcement) -> None:
    """Send ``announcement`` on the models topic and wait for the broker's acknowledgement.

    Raises:
        BrokerError: the broker is unreachable or did not acknowledge in time.
    """
    record = [(announcement.key, announcement.to_bytes())]
    try:
        ensure_topics(settings)
        asyncio.run(
            asyncio.wait_for(
                produce_records(settings.bootstrap, settings.models_topic, record, acks="all"),
                timeout=ANNOUNCE_TIMEOUT_SECONDS,
            )
        )
    except (kafka.errors.KafkaError, aiokafka.errors.KafkaError, OSError, TimeoutError) as exc:
        raise BrokerError(
            f"could not announce model version {announcement.version} on "
            f"{settings.models_topic} at {settings.bootstrap} ({type(exc).__name__}: {exc}); "
            "CURRENT is unchanged"
        ) from exc
