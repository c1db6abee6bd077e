"""Every worker follows ``shop.models`` and swaps to each new model version without a restart.

The announcements topic is small and every worker needs all of it, so, like the
catalogue, it is read from the beginning by a group-less consumer and then
followed. An announcement of this deployment's model name is served only if its
signature verifies (``online_learning.signing``) and, with ``require_dp_models``,
if the version is DP-trained; the version is then loaded from the model store off
the event loop (its files checked against the manifest the signature pins), and
the pipeline's scorer is replaced on the loop, between two agent batches: no batch
is paused and every recommendation names the version that produced it. Anything
refused is logged and counted and the current model kept. A malformed
announcement goes to the DLQ with a reason, like any bad input. The worker only
reads the store: what it concludes about a version (a failed load, a failed
probation) stays its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence

from model.serving.scorers import CheckpointScorer
from online_learning.errors import BadAnnouncement, BadSignature, RegistryError
from online_learning.registry import Announcement, ModelStore
from online_learning.signing import AnnouncementSigner
from streams.kafka.feed import follow
from streams.metrics.worker import WorkerMetrics
from streams.pipeline.batch import EventPipeline
from streams.pipeline.crypto import load_master_key
from streams.pipeline.monitor import ProbationFailure
from streams.pipeline.records import InputRecord, Sealer, SendRecords, dead_letter
from streams.pipeline.validation import Reason, Rejection
from streams.settings import Settings

log = logging.getLogger(__name__)

#: Versions kept in :attr:`ModelFeed.rejected` (a flood of forged announcements stays bounded).
REMEMBERED = 64


class ModelFeed:
    """Applies the newest valid announcement to ``pipeline``; ``loaded`` is set once caught up."""

    def __init__(
        self,
        settings: Settings,
        *,
        pipeline: EventPipeline,
        store: ModelStore,
        send_dead_letters: SendRecords,
        seal: Sealer,
        loaded: asyncio.Event,
        metrics: WorkerMetrics,
        signer: AnnouncementSigner | None = None,
    ) -> None:
        self._settings = settings
        #: Verifies announcements; None: derived from the settings' master key on first use.
        self._signer = signer
        self._metrics = metrics
        self._pipeline = pipeline
        self._store = store
        self._send_dead_letters = send_dead_letters
        self._seal = seal
        self.loaded = loaded
        #: The last versions this worker refused, failed to load or failed on probation.
        self.rejected: deque[str] = deque(maxlen=REMEMBERED)

    async def run(self) -> None:
        """Follow the announcements topic until cancelled (``streams.kafka.feed``)."""
        await follow(
            self._settings, self._settings.models_topic, apply=self.apply, loaded=self.loaded
        )

    async def apply(self, records: Sequence[InputRecord]) -> None:
        """Swap to the newest acceptable version among ``records``; DLQ the malformed ones."""
        letters, refused, newest = [], [], None
        for record in records:
            try:
                announcement = Announcement.from_bytes(record.value)
            except BadAnnouncement as exc:
                rejection = Rejection(Reason.INVALID_VALUE, f"bad model announcement: {exc}"[:200])
                letters.append(
                    dead_letter(record, rejection, topic=self._settings.dlq_topic, seal=self._seal)
                )
                continue
            if announcement.name != self._settings.model_name:
                continue
            refusal = self._refusal(announcement)
            if refusal is None:
                newest = announcement
                continue
            self._metrics.swapped("rejected")
            self.rejected.append(announcement.version)
            refused.append((record, refusal))
        if refused:  # one line per poll, however many: a flood must not flood the log
            first, why = refused[0]
            log.error(
                "%d model announcements refused; the first (%s partition %d offset %d): %s",
                len(refused),
                first.topic,
                first.partition,
                first.offset,
                why,
            )
        if letters:
            await self._send_dead_letters(letters)
        if newest is not None and newest.version != self._pipeline.ranker.primary.version:
            await self._swap(newest)

    def _refusal(self, announcement: Announcement) -> str | None:
        """Why this worker must not serve the announced version, or None."""
        if self._signer is None:
            self._signer = AnnouncementSigner(load_master_key(self._settings))
        try:
            self._signer.verify(announcement)
        except BadSignature as exc:
            return str(exc)
        if self._settings.require_dp_models and announcement.privacy is None:
            return (
                f"{announcement.version} is not DP-trained (privacy null) and "
                "INTENTSTREAM_REQUIRE_DP_MODELS is set"
            )
        return None

    async def _swap(self, announcement: Announcement) -> None:
        try:
            scorer = await asyncio.to_thread(self._load, announcement)
        except RegistryError as exc:
            self._metrics.swapped("rejected")
            self.rejected.append(announcement.version)
            log.error(
                "model %s rejected, keeping %s: %s",
                announcement.version,
                self._pipeline.ranker.primary.version,
                exc,
            )
            return
        self._pipeline.use_scorer(scorer, probation=True)
        self._metrics.serving(
            scorer.version, epsilon=scorer.epsilon, created_at=announcement.created_at
        )
        self._metrics.swapped("loaded", announced_at=announcement.created_at)
        log.warning("now scoring with model %s (on probation)", scorer.version)

    def record_failure(self, failure: ProbationFailure) -> None:
        """Count a version that failed probation here; the store is left as it is.

        The pipeline already serves the version before it again. One worker judges
        on its own partitions' events, so its verdict stays its own: a version is
        rejected for every worker only by ``intentstream model rollback``.
        """
        self._metrics.swapped("failed_probation")
        self.rejected.append(failure.version)
        log.info("model %s failed probation here; the store is unchanged", failure.version)

    def _load(self, announcement: Announcement) -> CheckpointScorer:
        checkpoint = self._store.load(announcement.version, pinned=announcement.manifest)
        return CheckpointScorer.on_best_device(checkpoint, full_ranking=self._settings.full_ranking)
