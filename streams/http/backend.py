"""The API's view of a running Faust worker: readiness, routes, latest lists and search."""

from __future__ import annotations

import time
import uuid
from typing import Any

import faust

from model.serving.ranker import Ranked
from streams.http.latest import LatestLists
from streams.http.routing import Routes, routes_from
from streams.kafka.tables import WorkerTables, reader
from streams.pipeline.answers import recommendation_body, with_user_id
from streams.pipeline.batch import EventPipeline
from streams.pipeline.pseudonyms import Pseudonymizer


class WorkerBackend:
    """Answers the API's questions from the worker's app, tables, pipeline and latest lists.

    Everything runs in the worker's event loop, between batches: a search reads the
    user's sealed state as the last batch left it and ranks on the loop (a few
    milliseconds with the served ranker); nothing here writes.
    """

    def __init__(
        self,
        app: faust.App,
        *,
        events_topic: str,
        pipeline: EventPipeline,
        tables: WorkerTables,
        latest: LatestLists,
        pseudonyms: Pseudonymizer,
    ) -> None:
        self._app = app
        self._topic = events_topic
        self._pipeline = pipeline
        self._tables = tables
        self._latest = latest
        self._pseudonyms = pseudonyms
        #: Set by the worker once it started: tables recovered, feeds read.
        self.started = False
        self._distribution: object = None
        self._routes: Routes | None = None

    def readiness(self) -> dict[str, Any]:
        """The checks /readyz shows, and ``ready``: all of them pass."""
        rebalancing = bool(self._app.rebalancing) or self._app.tables.recovery.in_recovery
        routes = self.routes()
        return {
            "ready": self.started and not rebalancing and routes is not None,
            "started": self.started,
            "rebalancing": rebalancing,
            "routes": routes is not None,
            "partitions": self._owned(),
            "model_version": self._pipeline.ranker.primary.version,
        }

    def _owned(self) -> list[int]:
        """Partitions of the events topic this worker owns."""
        actives = self._app.assignor.assigned_actives()
        return sorted(tp.partition for tp in actives if tp.topic == self._topic)

    def ready(self) -> bool:
        """Whether the worker answers for the partitions it owns now."""
        return (
            self.started and not self._app.rebalancing and not self._app.tables.recovery.in_recovery
        )

    def routes(self) -> Routes | None:
        """Every partition's owner, from the group assignment Faust's assignor shared."""
        if not self.started:
            return None
        distribution = self._app.assignor.external_topics_metadata()
        # The assignor replaces the whole mapping on each assignment: same object, same routes.
        if distribution is not self._distribution:
            self._routes = routes_from(
                distribution,
                topic=self._topic,
                partitions=self._app.consumer.topic_partitions(self._topic),
                own_url=str(self._app.conf.canonical_url),
            )
            self._distribution = distribution
        return self._routes

    def lists_held(self) -> int:
        """Users whose latest list this worker holds."""
        return len(self._latest)

    def latest(self, user_id: str) -> bytes | None:
        """The user's latest recommendation, as the topic carried it, or None."""
        body = self._latest.get(self._pseudonym(user_id))
        return None if body is None else with_user_id(user_id, body)

    def search(self, user_id: str, query: str, k: int) -> bytes:
        """Rank for ``query`` with the user's history, in the recommendation's shape."""
        started = time.perf_counter()
        answer, intent = self._pipeline.search(
            self._pseudonym(user_id),
            query,
            read_state=reader(self._tables.users),
            read_key=reader(self._tables.keys),
        )
        answer = Ranked(answer.items[:k], answer.context, answer.model_version)
        body = recommendation_body(
            f"search-{uuid.uuid4().hex}",
            answer,
            purchase_intent=intent,
            now=time.time(),
            latency_s=time.perf_counter() - started,
        )
        return with_user_id(user_id, body)

    def _pseudonym(self, user_id: str) -> bytes:
        return self._pseudonyms.one(user_id).encode()
