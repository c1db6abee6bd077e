"""A raw user id in a request never reaches a log record or a metric, whatever the answer."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from streams.http.auth import BearerToken
from streams.http.proxy import Forwarder
from streams.http.server import ApiLimits, build_application
from streams.http.service import ApiService, bind
from streams.metrics.http import HttpMetrics
from tests.unit.streams.http.conftest import AUTH, TOKEN, DictBackend, recommendation

SECRET_USER = "shopper-7f3a9c-redact-me"


class FailingBackend(DictBackend):
    """Its search fails with the user id in the message, as a careless bug would."""

    def search(self, user_id: str, query: str, k: int) -> bytes:
        raise KeyError(f"no state for {user_id}")


async def test_no_user_id_in_logs_or_metrics(
    caplog: pytest.LogCaptureFixture, free_port: Callable[..., int]
) -> None:
    caplog.set_level(logging.DEBUG)
    unreachable = f"http://127.0.0.1:{free_port()}"
    backend = FailingBackend(
        lists={SECRET_USER: recommendation(SECRET_USER)}, own_url="http://self:1"
    )
    backend.owners = {0: "http://self:1", 1: "http://self:1"}
    registry = CollectorRegistry()
    forwarder = Forwarder(timeout=2.0)
    app = build_application(
        backend,
        token=BearerToken(TOKEN),
        limits=ApiLimits(rate_per_second=1000.0, burst=1000, max_body_bytes=1024, top_k=5),
        metrics=HttpMetrics(registry),
        forwarder=forwarder,
    )
    sock = bind("127.0.0.1", 0)
    service = ApiService(app, sock=sock, forwarder=forwarder)
    await service.start()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    path = f"/v1/users/{quote(SECRET_USER)}/recommendations"
    statuses = []
    try:
        async with aiohttp.ClientSession() as session:
            calls: list[tuple[str, str, Any, dict[str, str]]] = [
                ("GET", path, None, AUTH),  # found
                ("GET", path, None, {}),  # unauthorised
                ("GET", path.replace("recommendations", "recs"), None, AUTH),  # no route
                ("POST", "/v1/search", {"user_id": SECRET_USER, "query": "q"}, AUTH),  # fails
                ("POST", "/v1/search", {"user_id": SECRET_USER, "query": ""}, AUTH),  # bad
            ]
            for method, url, body, headers in calls:
                async with session.request(method, base + url, json=body, headers=headers) as r:
                    statuses.append(r.status)
            backend.owners = {0: unreachable, 1: unreachable}  # the owner is down
            async with session.get(base + path, headers=AUTH) as r:
                statuses.append(r.status)
            backend.lists.clear()
            backend.owners = {0: "http://self:1", 1: "http://self:1"}
            async with session.get(base + path, headers=AUTH) as r:
                statuses.append(r.status)  # no list
    finally:
        await service.stop()
    assert statuses == [200, 401, 404, 500, 400, 503, 404]
    formatter = logging.Formatter("%(name)s %(message)s")
    logged = "\n".join(formatter.format(record) for record in caplog.records)
    assert "failed: KeyError" in logged  # the failure was logged, without its message
    assert SECRET_USER not in logged
    exported = generate_latest(registry).decode()
    assert "/v1/users/{user_id}/recommendations" in exported
    assert SECRET_USER not in exported and "redact" not in exported
