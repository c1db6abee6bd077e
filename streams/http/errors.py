"""The API's refusals, each one HTTP status and a machine-readable ``error`` code.

Raised by the request path and turned into ``{"error": code, "detail": ...}`` by the
server's error middleware. The detail never holds a user id.
"""

from __future__ import annotations


class ApiError(Exception):
    """Base class: a request the API answers with ``status`` and an error body.

    Args:
        detail: one sentence for a person; never a user id.
        retry_after: seconds, sent as ``Retry-After`` when set.
    """

    status = 500
    code = "internal"

    def __init__(self, detail: str, *, retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


class BadRequest(ApiError):
    """400: the body is not JSON, or a field is missing or out of range."""

    status, code = 400, "bad_request"


class Unauthorized(ApiError):
    """401: no bearer token, or a wrong one."""

    status, code = 401, "unauthorized"


class ApiDisabled(ApiError):
    """403: the worker has no ``INTENTSTREAM_HTTP_TOKEN``, so it serves no ``/v1`` route."""

    status, code = 403, "api_disabled"


class NoList(ApiError):
    """404: the owner of the user's partition holds no list for them."""

    status, code = 404, "no_list"


class RouteNotFound(ApiError):
    """404: no such route."""

    status, code = 404, "not_found"


class MethodNotAllowed(ApiError):
    """405: the route exists, not with this method."""

    status, code = 405, "method_not_allowed"


class TooLarge(ApiError):
    """413: the body is larger than ``INTENTSTREAM_HTTP_MAX_BODY_BYTES``."""

    status, code = 413, "too_large"


class RateLimited(ApiError):
    """429: the client used its requests; ``Retry-After`` says when to come back."""

    status, code = 429, "rate_limited"


class Unavailable(ApiError):
    """503: not ready, rebalancing, or the owner of the partition cannot be reached."""

    status, code = 503, "unavailable"
