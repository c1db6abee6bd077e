"""Factories for the HTTP API's tests: a backend that answers from dicts, and running servers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from streams.http.auth import BearerToken
from streams.http.proxy import Forwarder
from streams.http.routing import Routes
from streams.http.server import ApiLimits, build_application
from streams.metrics.http import HttpMetrics

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class DictBackend:
    """A worker's backend over plain dicts: ``lists`` by raw user id, owner URLs by partition.

    ``owners`` None = rebalancing; every partition owned by ``own_url`` = a lone worker.
    """

    own_url: str = "http://self:1"
    lists: dict[str, dict[str, Any]] = field(default_factory=dict)
    owners: dict[int, str] | None = None
    is_ready: bool = True
    searches: list[tuple[str, str, int]] = field(default_factory=list)

    def readiness(self) -> dict[str, Any]:
        return {
            "ready": self.is_ready,
            "started": self.is_ready,
            "rebalancing": False,
            "routes": self.owners is not None,
            "partitions": [0],
            "model_version": "baseline-cooc-1",
        }

    def ready(self) -> bool:
        return self.is_ready

    def routes(self) -> Routes | None:
        owners = self.owners if self.owners is not None else None
        return None if owners is None else Routes(owners=owners, own_url=self.own_url)

    def latest(self, user_id: str) -> bytes | None:
        found = self.lists.get(user_id)
        return None if found is None else orjson.dumps(found)

    def search(self, user_id: str, query: str, k: int) -> bytes:
        self.searches.append((user_id, query, k))
        return orjson.dumps(recommendation(user_id, event_id="search-1", context="search"))


def recommendation(
    user_id: str, *, event_id: str = "e1", context: str = "browse"
) -> dict[str, Any]:
    """A recommendation in the contract's shape."""
    return {
        "user_id": user_id,
        "event_id": event_id,
        "ts": 1.7e9,
        "context": context,
        "items": [{"item_id": "i1", "score": 0.5}],
        "purchase_intent": 0.1,
        "model_version": "baseline-cooc-1",
        "latency_ms": 1.0,
    }


@dataclass
class Running:
    """A served API: its client, backend and metrics registry."""

    client: TestClient
    backend: DictBackend
    registry: CollectorRegistry

    @property
    def url(self) -> str:
        return str(self.client.make_url("")).rstrip("/")


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Any]]:
    """Factory of running APIs: ``await serve(backend, token=TOKEN, **limits)`` -> Running."""
    started: list[tuple[TestClient, Forwarder]] = []

    async def start(backend: DictBackend, *, token: str | None = TOKEN, **limits: Any) -> Running:
        registry = CollectorRegistry()
        forwarder = Forwarder(timeout=2.0)
        options = {"rate_per_second": 1000.0, "burst": 1000, "max_body_bytes": 1024, "top_k": 5}
        app: web.Application = build_application(
            backend,
            token=BearerToken(token),
            limits=ApiLimits(**{**options, **limits}),
            metrics=HttpMetrics(registry),
            forwarder=forwarder,
        )
        client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        started.append((client, forwarder))
        return Running(client, backend, registry)

    yield start
    for client, forwarder in started:
        await forwarder.close()
        await client.close()
