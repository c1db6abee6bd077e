"""Every worker follows ``shop.models`` and swaps to each new model version without a restart.

The announcements topic is small and every worker needs all of it, so, like the
catalogue, it is read from the beginning by a group-less consumer and then
followed. For each announcement of this deployment's model name, the version is
loaded from the model store off the event loop (checking its manifest; a
version that fails is marked rejected and the current one kept), and the
pipeline's scorer is replaced on the loop, between two agent batches: no batch
is paused and every recommendation names the version that produced it. A
malformed announcement goes to the DLQ with a reason, like any bad input.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from model.serving.ranker import CheckpointScorer
from online_learning.errors import BadAnnouncement, ModelRejected, RegistryError
from online_learning.registry import Announcement, ModelStore
from streams.kafka.feed import follow
from streams.metrics.worker import WorkerMetrics
from streams.pipeline.batch import EventPipeline
from streams.pipeline.monitor import ProbationFailure
from streams.pipeline.records import InputRecord, Sealer, SendRecords, dead_letter
from streams.pipeline.validation import Reason, Rejection
from streams.settings import Settings

log = logging.getLogger(__name__)


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
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._pipeline = pipeline
        self._store = store
        self._send_dead_letters = send_dead_letters
        self._seal = seal
        self.loaded = loaded
        self.rejected: list[str] = []

    async def run(self) -> None:
        """Follow the announcements topic until cancelled (``streams.kafka.feed``)."""
        await follow(
            self._settings, self._settings.models_topic, apply=self.apply, loaded=self.loaded
        )

    async def apply(self, records: Sequence[InputRecord]) -> None:
        """Swap to the newest valid version among ``records``; DLQ the malformed ones."""
        letters, newest = [], None
        for record in records:
            try:
                announcement = Announcement.from_bytes(record.value)
            except BadAnnouncement as exc:
                rejection = Rejection(Reason.INVALID_VALUE, f"bad model announcement: {exc}"[:200])
                letters.append(
                    dead_letter(record, rejection, topic=self._settings.dlq_topic, seal=self._seal)
                )
                continue
            if announcement.name == self._settings.model_name:
                newest = announcement
        if letters:
            await self._send_dead_letters(letters)
        if newest is not None and newest.version != self._pipeline.ranker.primary.version:
            await self._swap(newest)

    async def _swap(self, announcement: Announcement) -> None:
        try:
            scorer = await asyncio.to_thread(self._load, announcement.version)
        except (ModelRejected, RegistryError) as exc:
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
        self._metrics.serving(scorer.version, created_at=announcement.created_at)
        self._metrics.swapped("loaded", announced_at=announcement.created_at)
        log.warning("now scoring with model %s (on probation)", scorer.version)

    def record_failure(self, failure: ProbationFailure) -> None:
        """Mark a version that failed probation rejected; if it is still CURRENT, go back too.

        The pipeline already serves the version before it again; CURRENT must follow,
        or a learner (re)started now would refuse to start from a rejected version,
        and new workers would load it first. Blocking file work: call it in a thread.
        """
        version = failure.version
        self._metrics.swapped("failed_probation")
        self.rejected.append(version)
        self._store.mark_rejected(version, f"online metric: {failure.reason}")
        if self._store.current() != version:
            return
        try:
            self._store.set_current(failure.restored, verify=False)
        except RegistryError as exc:  # the baseline, or a version gone from the store
            log.error(
                "CURRENT stays on rejected %s: cannot point it at %s: %s",
                version,
                failure.restored,
                exc,
            )
        else:
            log.warning("CURRENT rolled back from %s to %s", version, failure.restored)

    def _load(self, version: str) -> CheckpointScorer:
        checkpoint = self._store.verify(version)  # marks the version rejected when it fails
        return CheckpointScorer.on_best_device(checkpoint)
