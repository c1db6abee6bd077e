"""The API's aiohttp application: routes, limits, authentication, errors and metrics.

What a request meets, outermost first: the error and metrics middleware (every
refusal becomes a JSON error; the route template, never the path, labels the
metrics), then, on ``/v1`` routes, the size limit, the client's rate limit and
the bearer token. A request forwarded by another worker with the right token
was limited where it came in and is not limited again. No access log is kept:
paths hold raw user ids.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from aiohttp import web

from streams.http.auth import FORWARDED_HEADER, BearerToken
from streams.http.errors import (
    ApiError,
    BadRequest,
    MethodNotAllowed,
    NoList,
    RouteNotFound,
    TooLarge,
    Unauthorized,
    Unavailable,
)
from streams.http.limits import RateLimiter
from streams.http.openapi import document_bytes
from streams.http.proxy import Forwarder
from streams.http.routing import Routes
from streams.metrics.http import HttpMetrics

log = logging.getLogger(__name__)

RECOMMENDATIONS = "/v1/users/{user_id}/recommendations"
SEARCH = "/v1/search"
#: Longest user id and query accepted (the event schema's limits).
MAX_USER_ID_CHARS = 256
MAX_QUERY_CHARS = 1024

#: Where a request was answered: ``local``, ``forwarded`` (to the owner) or ``none``.
SERVED = web.RequestKey("served", str)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Backend(Protocol):
    """What the API asks of its worker (``backend.py``: the Faust worker's)."""

    def readiness(self) -> dict[str, Any]:
        """``{"ready": bool, ...checks}``."""
        ...

    def ready(self) -> bool:
        """Whether this worker answers for the partitions it owns now."""
        ...

    def routes(self) -> Routes | None:
        """The owner of every partition, or None while a rebalance is under way."""
        ...

    def latest(self, user_id: str) -> bytes | None:
        """The user's latest recommendation (the contract's JSON), or None."""
        ...

    def search(self, user_id: str, query: str, k: int) -> bytes:
        """A synchronous search answer for the user (the contract's JSON)."""
        ...


@dataclass(frozen=True)
class ApiLimits:
    """The API's limits (``INTENTSTREAM_HTTP_*`` and ``INTENTSTREAM_TOP_K``)."""

    rate_per_second: float
    burst: int
    max_body_bytes: int
    top_k: int


def build_application(
    backend: Backend,
    *,
    token: BearerToken,
    limits: ApiLimits,
    metrics: HttpMetrics,
    forwarder: Forwarder,
    clock: Callable[[], float] = time.monotonic,
) -> web.Application:
    """The aiohttp application of the API over ``backend``."""
    api = _Api(backend, limits=limits, forwarder=forwarder)
    limiter = RateLimiter(rate=limits.rate_per_second, burst=limits.burst, clock=clock)
    app = web.Application(
        middlewares=[_observe(metrics, clock), _guard(token, limiter, limits.max_body_bytes)],
        client_max_size=limits.max_body_bytes,
    )
    app.router.add_get("/healthz", api.healthz)
    app.router.add_get("/readyz", api.readyz)
    app.router.add_get("/openapi.json", api.openapi)
    app.router.add_get(RECOMMENDATIONS, api.recommendations)
    app.router.add_post(SEARCH, api.search)
    return app


def json_response(
    payload: bytes, *, status: int = 200, retry_after: int | str | None = None
) -> web.Response:
    """A JSON answer; never cached, as it may hold a shopper's list."""
    headers = {"Cache-Control": "no-store"}
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return web.Response(
        body=payload, status=status, content_type="application/json", headers=headers
    )


def error_response(error: ApiError) -> web.Response:
    """``{"error": code, "detail": ...}`` with the error's status (and Retry-After)."""
    body = orjson.dumps({"error": error.code, "detail": error.detail})
    response = json_response(body, status=error.status, retry_after=error.retry_after)
    if error.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="intentstream"'
    return response


def route_template(request: web.Request) -> str:
    """The matched route's template (``/v1/users/{user_id}/recommendations``), never the path."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def _observe(metrics: HttpMetrics, clock: Callable[[], float]) -> Any:
    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = clock()
        request[SERVED] = "none"
        try:
            response = await handler(request)
        except ApiError as error:
            response = error_response(error)
        except web.HTTPException as exc:
            response = error_response(_from_aiohttp(exc))
        except Exception as exc:
            # The message may quote a user id: log the exception's type and frames only.
            frames = "".join(traceback.format_tb(exc.__traceback__))
            log.error(
                "%s %s failed: %s\n%s",
                request.method,
                route_template(request),
                type(exc).__name__,
                frames,
            )
            response = error_response(ApiError("the worker failed to answer"))
        metrics.record(
            route=route_template(request),
            method=request.method,
            status=response.status,
            served=request[SERVED],
            seconds=clock() - started,
        )
        return response

    return observe


def _from_aiohttp(exc: web.HTTPException) -> ApiError:
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return TooLarge("the request body is too large")
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return MethodNotAllowed("this route does not take this method")
    if isinstance(exc, web.HTTPNotFound):
        return RouteNotFound("no such route")
    error = ApiError(exc.reason)
    error.status, error.code = exc.status, "http_error"
    return error


def _guard(token: BearerToken, limiter: RateLimiter, max_body_bytes: int) -> Any:
    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/v1/"):
            return await handler(request)
        if (request.content_length or 0) > max_body_bytes:
            raise TooLarge("the request body is too large")
        client = request.remote or "unknown"
        forwarded = request.headers.get(FORWARDED_HEADER) == "1"
        if not forwarded:
            # Before the token check, so that guessing tokens is limited too.
            limiter(client)
        try:
            token(request.headers.get("Authorization"))
        except Unauthorized:
            if forwarded:  # claiming to be a worker does not buy unlimited guesses
                limiter(client)
            raise
        return await handler(request)

    return guard


class _Api:
    def __init__(self, backend: Backend, *, limits: ApiLimits, forwarder: Forwarder) -> None:
        self._backend = backend
        self._limits = limits
        self._forwarder = forwarder

    async def healthz(self, request: web.Request) -> web.Response:
        return json_response(b'{"status":"ok"}')

    async def readyz(self, request: web.Request) -> web.Response:
        state = self._backend.readiness()
        return json_response(orjson.dumps(state), status=200 if state["ready"] else 503)

    async def openapi(self, request: web.Request) -> web.Response:
        return web.Response(body=document_bytes(), content_type="application/json")

    async def recommendations(self, request: web.Request) -> web.Response:
        user_id = _checked_user_id(request.match_info["user_id"])
        relayed = await self._forward_unless_own(request, user_id, body=b"")
        if relayed is not None:
            return relayed
        value = self._backend.latest(user_id)
        if value is None:
            raise NoList("this worker holds no recommendation list for the user")
        return json_response(value)

    async def search(self, request: web.Request) -> web.Response:
        raw = await request.read()
        user_id, query, k = self._search_fields(raw)
        relayed = await self._forward_unless_own(request, user_id, body=raw)
        if relayed is not None:
            return relayed
        return json_response(self._backend.search(user_id, query, k))

    def _search_fields(self, raw: bytes) -> tuple[str, str, int]:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise BadRequest("the body must be a JSON object") from None
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object")
        user_id = _checked_user_id(body.get("user_id"))
        query = body.get("query")
        if not isinstance(query, str) or not 1 <= len(query) <= MAX_QUERY_CHARS:
            raise BadRequest(f"query must be a string of 1 to {MAX_QUERY_CHARS} characters")
        top_k = self._limits.top_k
        k = body.get("k", top_k)
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= top_k:
            raise BadRequest(f"k must be an integer from 1 to {top_k}")
        unknown = set(body) - {"user_id", "query", "k"}
        if unknown:
            raise BadRequest(f"unknown fields: {', '.join(sorted(unknown))}"[:200])
        return user_id, query, k

    async def _forward_unless_own(
        self, request: web.Request, user_id: str, *, body: bytes
    ) -> web.Response | None:
        """None when this worker owns the user's partition; else the owner's relayed answer."""
        routes = self._backend.routes()
        if routes is None:
            raise Unavailable("the workers are rebalancing their partitions", retry_after=1)
        owner = routes.owner(user_id)
        if routes.is_own(owner):
            if not self._backend.ready():
                raise Unavailable("this worker is not ready", retry_after=1)
            request[SERVED] = "local"
            return None
        if request.headers.get(FORWARDED_HEADER) == "1":
            # Forwarded here by a worker with older routes: never forward twice.
            raise Unavailable("the user's partition is changing owner", retry_after=1)
        request[SERVED] = "forwarded"
        relayed = await self._forwarder.forward(
            owner,
            method=request.method,
            path=request.raw_path,
            authorization=request.headers.get("Authorization"),
            body=body,
        )
        response = web.Response(
            body=relayed.body, status=relayed.status, content_type=relayed.content_type
        )
        response.headers["Cache-Control"] = "no-store"
        if relayed.retry_after is not None:
            response.headers["Retry-After"] = relayed.retry_after
        return response


def _checked_user_id(user_id: object) -> str:
    if not isinstance(user_id, str) or not 1 <= len(user_id) <= MAX_USER_ID_CHARS:
        raise BadRequest(f"user_id must be a string of 1 to {MAX_USER_ID_CHARS} characters")
    return user_id
