"""The served OpenAPI document is the committed one and describes every route."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from streams.http.auth import BearerToken
from streams.http.openapi import document
from streams.http.proxy import Forwarder
from streams.http.server import ApiLimits, build_application
from streams.metrics.http import HttpMetrics
from tests.unit.streams.http.conftest import DictBackend

COMMITTED = Path(__file__).resolve().parents[4] / "streams" / "http" / "openapi.json"


def routes_of(app: web.Application) -> set[tuple[str, str]]:
    return {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }


async def test_the_served_document_is_the_committed_one(serve: Callable[..., Any]) -> None:
    api = await serve(DictBackend())
    response = await api.client.get("/openapi.json")
    assert response.status == 200
    assert await response.read() == COMMITTED.read_bytes()
    assert json.loads(COMMITTED.read_text())["openapi"].startswith("3.")


def test_every_route_is_in_the_document_and_nothing_else() -> None:
    app = build_application(
        DictBackend(),
        token=BearerToken(None),
        limits=ApiLimits(rate_per_second=1.0, burst=1, max_body_bytes=1024, top_k=5),
        metrics=HttpMetrics(CollectorRegistry()),
        forwarder=Forwarder(),
    )
    documented = {(method, path) for path, item in document()["paths"].items() for method in item}
    assert documented == routes_of(app)


def test_the_recommendation_schema_is_the_contracts(repo_root: Path) -> None:
    contract = json.loads((repo_root / "streams/schemas/recommendation.schema.json").read_text())
    served = document()["components"]["schemas"]["Recommendation"]
    assert served["properties"] == contract["properties"]
    assert served["required"] == contract["required"]
    assert served["additionalProperties"] is False


def test_every_error_code_the_api_raises_is_documented() -> None:
    import streams.http.errors as errors

    codes = {
        cls.code
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.ApiError)
    }
    documented = set(document()["components"]["schemas"]["Error"]["properties"]["error"]["enum"])
    assert codes <= documented
