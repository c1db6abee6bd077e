"""``intentstream learn``: the learner process, learning from the stream while workers serve.

It reads ``shop.events`` in its own consumer group (``<app id>-learn``), so it
sees every event without taking partitions from the workers. Users and sessions
become keyed pseudonyms at once; only each session's recent item ids are kept,
in memory and bounded, with the user each session belongs to. Each event extends
its session, and the session so far is a training sequence for
``online_learning.trainer.IncrementalTrainer`` (micro-batches with replay). An
erasure request drops the user's sessions and sequences, and their events at or
before it are never learned afterwards. Every ``learn_publish_every`` sequences
or ``learn_publish_seconds`` it publishes the model as a new version (parent: the
version it started from), with the privacy it spent, in the model store and
announces it on ``shop.models``, where every worker swaps to it. Bad records are
skipped here (the workers dead-letter them). With DP-SGD it stops updating, and
goes on checking and serving, once its lineage's lifetime budget is spent.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from model.checkpoint import Checkpoint
from model.training.fit import pick_device
from model.training.update import OnlinePrivacy
from online_learning.budget import SpendWindows
from online_learning.drift import DriftMonitor
from online_learning.prequential import PrequentialRanking
from online_learning.registry import ModelStore
from online_learning.trainer import IncrementalTrainer, UpdateConfig
from streams.errors import ConfigurationError
from streams.kafka.announce import publish_update
from streams.learner.erasure import ErasedUsers
from streams.learner.sessions import SessionBuffer
from streams.learner.spend import history_of, lineage_runs, version_privacy
from streams.metrics.stats import LearnerStats
from streams.pipeline.pseudonyms import Pseudonymizer
from streams.pipeline.records import InputRecord
from streams.pipeline.validation import InputValidation
from streams.settings import Settings

log = logging.getLogger(__name__)

#: Most sessions whose recent items the learner keeps (least recently active dropped).
MAX_SESSIONS = 200_000
#: List length of the learner's own prequential check.
CHECK_K = 10


class Learner:
    """Feeds consumed events to an incremental trainer and publishes versions."""

    def __init__(self, settings: Settings, *, pseudonymizer: Pseudonymizer) -> None:
        self._settings = settings
        self._pseudonyms = pseudonymizer
        store = ModelStore(settings.model_store, name=settings.model_name)
        current = store.current()
        if current is None:
            raise ConfigurationError(
                f"no current model in {settings.model_store}: publish a pretrained one first "
                "(intentstream train, then intentstream model publish)"
            )
        checkpoint = store.verify(current)
        checkpoint.model.to(pick_device())  # the GPU when there is one
        self.version = current
        self._vocab = checkpoint.vocab
        self._meta = checkpoint.meta
        #: The lineage's root (the version the first learner run started from) and the
        #: DP steps of every run of it so far, by run id.
        self.lineage, self._runs = lineage_runs(store, checkpoint.meta, version=current)
        #: The lineage's root and its own spend (None: not DP-trained).
        self._base = (self.lineage, _root_privacy(checkpoint.meta))
        self._run = uuid.uuid4().hex
        self.trainer = self._trainer(settings, checkpoint)
        if not self.trainer.learning:
            log.warning(
                "the DP budget of lineage %s is spent (epsilon cap %s): learning nothing, "
                "raise INTENTSTREAM_LEARN_DP_EPSILON deliberately or start from a fresh version",
                self.lineage,
                settings.learn_dp_epsilon,
            )
        self._validate = InputValidation(
            events_topic=settings.events_topic,
            requests_topic=settings.privacy_requests_topic,
            max_bytes=settings.max_event_bytes,
            future_seconds=settings.ts_future_tolerance_seconds,
        )
        self._sessions = SessionBuffer(
            capacity=MAX_SESSIONS, max_len=self.trainer.model.config.max_len
        )
        self._erased = ErasedUsers()
        #: Events dropped because their user was erased after them.
        self.dropped_erased = 0
        self.prequential = PrequentialRanking(k=CHECK_K)
        self.drift = DriftMonitor()
        self.drifts = 0
        self._drift_pending = False
        self._fast_until = 0
        self._since_publish = 0
        self._published_at = time.monotonic()
        self._published_updates = 0
        self.published: list[str] = []

    def _trainer(self, settings: Settings, checkpoint: Checkpoint) -> IncrementalTrainer:
        """The incremental trainer: plain, or DP-SGD continuing the lineage's spend."""
        dp = settings.learn_dp_noise_multiplier is not None
        pool = settings.learn_dp_pool_updates if dp else 1
        # DP-SGD divides each noisy sum by batch_size: keep it near the rows per step.
        rows = settings.learn_dp_sample_rate * settings.learn_update_every * pool
        return IncrementalTrainer(
            checkpoint.model,
            checkpoint.vocab,
            config=UpdateConfig(
                update_every=settings.learn_update_every,
                batch_size=max(1, round(rows)) if dp else UpdateConfig.batch_size,
                pool_updates=pool,
            ),
            privacy=self._dp_settings(settings),
            history=history_of(self._runs),
            windows=self._windows(settings, checkpoint.meta) if dp else None,
        )

    def _dp_settings(self, settings: Settings) -> OnlinePrivacy | None:
        """DP-SGD settings when turned on; the budget is the lineage's lifetime cap.

        The trainer composes it over the lineage's earlier runs (``history``), so a
        restart continues the spend and cannot reset it.
        """
        if settings.learn_dp_noise_multiplier is None:
            return None
        if self._base[1] is None:
            log.warning(
                "DP-SGD is on but %s is not DP-trained: the versions learned from it are not "
                "either (published with privacy null)",
                self.version,
            )
        return OnlinePrivacy(
            noise_multiplier=settings.learn_dp_noise_multiplier,
            max_grad_norm=settings.learn_dp_max_grad_norm,
            delta=settings.learn_dp_delta,
            epsilon_budget=settings.learn_dp_epsilon,
            sample_rate=settings.learn_dp_sample_rate,
        )

    @staticmethod
    def _windows(settings: Settings, meta: Mapping[str, Any]) -> SpendWindows:
        """The per-window budget, continuing the window the starting version recorded."""
        windows = SpendWindows(
            epsilon=settings.learn_dp_epsilon_per_window, seconds=settings.learn_dp_window_seconds
        )
        recorded = meta.get("stream_privacy", {}).get("window")
        if recorded and recorded["seconds"] == windows.seconds:
            windows.index, windows.start = int(recorded["index"]), float(recorded["start"])
        return windows

    def forget(self, records: Sequence[InputRecord]) -> int:
        """Apply erasure requests (``shop.privacy.requests``); returns the users forgotten.

        Each user's sessions and pending or replayed sequences go, and their events
        with a record timestamp at or before the request's are never learned again,
        in whatever order they are read. Invalid requests are skipped (the workers
        dead-letter them).
        """
        valid = [
            record
            for record in records
            if isinstance(
                self._validate(record.topic, record.key, record.value, record.timestamp), dict
            )
        ]
        users = self._pseudonyms.many((r.key or b"").decode("utf-8") for r in valid)
        sessions = 0
        for user, record in zip(users, valid, strict=True):
            self._erased.erase(user, at=record.timestamp)
            sessions += self._sessions.forget(user)
        sequences = self.trainer.forget(users)
        if valid:
            log.warning(
                "erased %d users: %d sessions, %d training sequences dropped",
                len(valid),
                sessions,
                sequences,
            )
        return len(valid)

    def learn(self, records: Sequence[InputRecord]) -> None:
        """Check, then learn from, a batch of consumed events.

        Each event is first checked against the current model's top 10 for its
        session so far (prequential HR@10, before anything learns from it); a
        drift in the miss rate makes the learner update 4x as often for the next
        ``learn_publish_every`` sequences and publish at once. Events of erased
        users are dropped first.
        """
        keyed = self._keyed(records)
        prefixes: list[list[str]] = []
        grown: dict[str, list[str]] = {}
        for _, session, item in keyed:
            so_far = grown.setdefault(session, self._sessions.items(session))
            prefixes.append(list(so_far))
            so_far.append(item)
        lists = self.trainer.top_k(prefixes, k=CHECK_K)
        for (user, session, item), prefix, top in zip(keyed, prefixes, lists, strict=True):
            if prefix:
                self._check(top, item)
            self._extend(user, session, item)

    def _keyed(self, records: Sequence[InputRecord]) -> list[tuple[str, str, str]]:
        """``(user, session, item)`` of each valid event with an item, erased ones left out.

        The session key starts with the user pseudonym: a session id that two users
        share is two sessions here, each erased with its own user.
        """
        checked = [(r, self._validate(r.topic, r.key, r.value, r.timestamp)) for r in records]
        events = [(r, e) for r, e in checked if isinstance(e, dict) and "item_id" in e]
        users = self._pseudonyms.many(str(e["user_id"]) for _, e in events)
        kept = [
            (user, e)
            for user, (r, e) in zip(users, events, strict=True)
            if not self._erased.covers(user, r.timestamp)
        ]
        self.dropped_erased += len(events) - len(kept)
        sessions = self._pseudonyms.sessions(
            str(e.get("session_id") or e["user_id"]) for _, e in kept
        )
        return [
            (user, user + session, str(e["item_id"]))
            for (user, e), session in zip(kept, sessions, strict=True)
        ]

    def _check(self, top: list[str], item: str) -> None:
        score = self.prequential.update_one(top, item)
        if score is None or not self.drift.update(1.0 - score.hit):
            return
        self.drifts += 1
        self._drift_pending = True
        self._fast_until = self.trainer.examples + self._settings.learn_publish_every
        self.trainer.update_every = max(1, self._settings.learn_update_every // 4)
        log.warning("drift in the online miss rate: updating 4x as often, publishing now")

    def _extend(self, user: str, session: str, item: str) -> None:
        items = self._sessions.extend(session, item, user=user)
        if len(items) >= 2:
            self.trainer.observe(items, key=session, owner=user)
            self._since_publish += 1
        if self._fast_until and self.trainer.examples >= self._fast_until:
            self._fast_until = 0
            self.trainer.update_every = self._settings.learn_update_every

    def due(self) -> bool:
        """Whether enough was learned, or enough time passed with something learned.

        Under DP-SGD, only after an update: once the budget is spent (for the window or
        for good) there is nothing new to publish.
        """
        if self._since_publish == 0:
            return False
        dp = self._settings.learn_dp_noise_multiplier is not None
        if dp and self.trainer.updates == self._published_updates:
            return False
        if self._drift_pending:
            return True
        elapsed = time.monotonic() - self._published_at
        return (
            self._since_publish >= self._settings.learn_publish_every
            or elapsed >= self._settings.learn_publish_seconds
        )

    def snapshot(self) -> tuple[Checkpoint, dict[str, float]]:
        """The model as it is now, with its metrics: what :meth:`publish` stores and announces.

        With DP-SGD the meta's ``stream_privacy`` holds what the lineage behind it
        spent (its root, each run's steps, their composed epsilon at delta, the
        window), so a learner restarted from it continues that spend.
        """
        online = self.prequential.snapshot()
        metrics = {
            "examples": float(self.trainer.examples),
            "updates": float(self.trainer.updates),
            "drifts": float(self.drifts),
            "HR@10_online": 100 * online.window_hr,
            "NDCG@10_online": 100 * online.window_ndcg,
        }
        if self.trainer.last_loss == self.trainer.last_loss:  # not NaN
            metrics["loss"] = self.trainer.last_loss
        meta = dict(self._meta)
        spent = self.trainer.privacy_spent()
        if spent is not None:
            runs = {**self._runs}
            if self.trainer.dp_steps:
                runs[self._run] = (
                    spent["noise_multiplier"],
                    spent["sample_rate"],
                    self.trainer.dp_steps,
                )
            meta["stream_privacy"] = {**spent, "lineage": self.lineage, "runs": runs}
            metrics["stream_epsilon"] = spent["epsilon"]
        checkpoint = Checkpoint(
            model=self.trainer.model,
            vocab=self._vocab,
            meta=meta,
            path=self._settings.model_store / self.version,
        )
        return checkpoint, metrics

    def stats(self) -> LearnerStats:
        """The running totals and online quality, for the metrics."""
        spent = self.trainer.privacy_spent()
        return LearnerStats(
            examples=self.trainer.examples,
            updates=self.trainer.updates,
            published=len(self.published),
            drifts=self.drifts,
            online=self.prequential.snapshot(),
            epsilon=spent["epsilon"] if spent else 0.0,
            learning=self.trainer.learning,
        )

    def privacy(self) -> dict[str, Any] | None:
        """The ``privacy`` of the version :meth:`publish` would publish now.

        The lineage root's spend plus the lineage's DP-SGD spend, or None (not
        DP-trained) without DP-SGD or when the root is not DP-trained.
        """
        version, spent = self._base
        return version_privacy(spent, base_version=version, learner=self.trainer.privacy_spent())

    def publish(self) -> str:
        """Store and announce the model as a child of the current version; returns its id."""
        checkpoint, metrics = self.snapshot()
        announcement = publish_update(
            self._settings,
            checkpoint,
            parent=self.version,
            metrics=metrics,
            privacy=self.privacy(),
        )
        self.version = announcement.version
        self.published.append(self.version)
        self._since_publish = 0
        self._published_updates = self.trainer.updates
        self._drift_pending = False
        self._published_at = time.monotonic()
        log.warning("published model %s (%d examples so far)", self.version, self.trainer.examples)
        return self.version


def _root_privacy(meta: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The spend of the lineage's root: a learner's version records it as its ``base``.

    (Its own ``privacy`` already holds the stream's spend, which the lineage's
    history counts again.)
    """
    privacy = meta.get("privacy")
    if privacy is None or "stream_privacy" not in meta:
        return privacy
    base: Mapping[str, Any] = privacy["base"]
    return base
