"""Bearer-token authentication of the ``/v1`` routes, compared in constant time."""

from __future__ import annotations

import hmac

from streams.http.errors import ApiDisabled, Unauthorized

#: Request header a worker adds when it forwards a request to the owner of a partition.
FORWARDED_HEADER = "X-Intentstream-Forwarded"


class BearerToken:
    """Checks ``Authorization: Bearer <token>`` against the configured token.

    Examples:
        >>> check = BearerToken("0123456789abcdef")
        >>> check("Bearer 0123456789abcdef")
        >>> check("Bearer wrong")
        Traceback (most recent call last):
        ...
        streams.http.errors.Unauthorized: a bearer token is required, and this one is not valid
    """

    def __init__(self, token: str | None) -> None:
        self._expected = None if token is None else f"Bearer {token}".encode()

    @property
    def enabled(self) -> bool:
        """Whether a token is configured (without one, ``/v1`` is refused)."""
        return self._expected is not None

    def __call__(self, authorization: str | None) -> None:
        """Return when ``authorization`` carries the token.

        Raises:
            ApiDisabled: no token is configured.
            Unauthorized: the header is missing or the token is wrong.
        """
        if self._expected is None:
            raise ApiDisabled(
                "this worker has no INTENTSTREAM_HTTP_TOKEN: its /v1 routes are turned off"
            )
        given = (authorization or "").encode("utf-8", "replace")
        # compare_digest takes as long whatever the first differing byte: no timing oracle.
        if not hmac.compare_digest(given, self._expected):
            raise Unauthorized("a bearer token is required, and this one is not valid")
