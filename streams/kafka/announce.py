"""Model releases: a version stored, announced on ``shop.models``, then made current.

``CURRENT`` changes only once the broker has acknowledged the announcement, so a
failed release leaves it as it was. Every announcement is signed with a key
derived from the master key (``online_learning.signing``); workers refuse the
rest. Storing a version prunes the store to ``model_store_keep`` versions. Used by
``intentstream model publish|rollback`` and by the learner.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import aiokafka.errors
import kafka.errors

from model.checkpoint import Checkpoint
from online_learning.registry import Announcement, ModelStore
from online_learning.signing import AnnouncementSigner
from online_learning.sources import checkpoint_meta
from streams.errors import BrokerError, ConfigurationError
from streams.kafka.admin import ensure_topics
from streams.kafka.produce import produce_records
from streams.kafka.security import client_security
from streams.pipeline.crypto import load_master_key
from streams.settings import Settings

log = logging.getLogger(__name__)

#: How long an announcement may take to be acknowledged, connection included.
ANNOUNCE_TIMEOUT_SECONDS = 30.0


def store_of(settings: Settings) -> ModelStore:
    """The model store the settings name."""
    return ModelStore(settings.model_store, name=settings.model_name)


def signer_of(settings: Settings) -> AnnouncementSigner:
    """The announcement signer of the deployment whose master key the settings name.

    Raises:
        ConfigurationError: no master key is configured.
    """
    return AnnouncementSigner(load_master_key(settings))


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
    store.prune(keep=settings.model_store_keep)
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
    store.prune(keep=settings.model_store_keep)
    _announce_and_set_current(settings, store, announcement)
    return announcement


def rollback(settings: Settings, version: str) -> Announcement:
    """Serve ``version`` again: verify it, announce it, point ``CURRENT`` at it, and
    mark the version it replaces rejected.

    The operator's rollback is what rejects a version for every worker (a worker's
    own probation failure stays with that worker): no worker loads it again, and no
    learner starts from it.

    Raises:
        UnknownVersion: it is not in the store.
        ModelRejected: it was rejected or fails verification (now marked rejected).
        BrokerError: the announcement was not acknowledged; ``CURRENT`` is unchanged.
    """
    store = store_of(settings)
    store.verify(version)
    announcement = store.announcement(version)
    replaced = store.current()
    _announce_and_set_current(settings, store, announcement)
    if replaced is not None and replaced != version:
        store.mark_rejected(replaced, f"rolled back to {version} by the operator")
        log.warning("%s rejected: rolled back to %s", replaced, version)
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
    except (BrokerError, ConfigurationError):  # not acknowledged, or no key to sign with
        if previous is not None:  # never released: as if it had not been published
            store.set_current(previous, verify=False)
        raise
    store.set_current(announcement.version, verify=False)
    log.info("announced %s on %s", announcement.version, settings.models_topic)


def announce(
    settings: Settings, announcement: Announcement, *, signer: AnnouncementSigner | None = None
) -> None:
    """Sign ``announcement``, send it on the models topic, wait for the acknowledgement.

    ``signer``: the settings' master key signs by default (a key rotation passes the new one).

    Raises:
        ConfigurationError: no master key is configured to sign with.
        BrokerError: the broker is unreachable or did not acknowledge in time.
    """
    signed = (signer or signer_of(settings)).sign(announcement)
    record = [(announcement.key, signed.to_bytes())]
    try:
        ensure_topics(settings)
        asyncio.run(
            asyncio.wait_for(
                produce_records(
                    settings.bootstrap,
                    settings.models_topic,
                    record,
                    acks="all",
                    **client_security(settings),
                ),
                timeout=ANNOUNCE_TIMEOUT_SECONDS,
            )
        )
    except (
        BrokerError,
        kafka.errors.KafkaError,
        aiokafka.errors.KafkaError,
        OSError,
        TimeoutError,
    ) as exc:
        raise BrokerError(
            f"could not announce model version {announcement.version} on "
            f"{settings.models_topic} at {settings.bootstrap} ({type(exc).__name__}: {exc}); "
            "CURRENT is unchanged"
        ) from exc
