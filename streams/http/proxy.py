"""Forwards a request to the worker that owns the user's partition and relays its answer."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import aiohttp
from yarl import URL

from streams.http.auth import FORWARDED_HEADER
from streams.http.errors import Unavailable

log = logging.getLogger(__name__)

#: Longest a forwarded request may take, connection included, seconds.
FORWARD_TIMEOUT_SECONDS = 5.0
#: Connections kept open to each other worker.
CONNECTIONS_PER_PEER = 32


@dataclass(frozen=True)
class Relayed:
    """The owner's answer, passed on as it came."""

    status: int
    body: bytes
    content_type: str
    retry_after: str | None


class Forwarder:
    """Sends requests on to other workers over kept-alive connections."""

    def __init__(self, *, timeout: float = FORWARD_TIMEOUT_SECONDS) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def forward(
        self, owner: str, *, method: str, path: str, authorization: str | None, body: bytes
    ) -> Relayed:
        """``method`` ``path`` (already percent-encoded) on ``owner``, marked as forwarded.

        Raises:
            Unavailable: the owner could not be reached or did not answer in time.
        """
        headers = {FORWARDED_HEADER: "1", "Content-Type": "application/json"}
        if authorization is not None:
            headers["Authorization"] = authorization
        url = URL(owner).join(URL(path, encoded=True))
        try:
            async with self._open().request(
                method, url, data=body or None, headers=headers
            ) as response:
                return Relayed(
                    status=response.status,
                    body=await response.read(),
                    content_type=response.content_type,
                    retry_after=response.headers.get("Retry-After"),
                )
        except (TimeoutError, aiohttp.ClientError) as exc:
            # The URL holds the user id: only the owner and the kind of failure are logged.
            log.warning("forwarding to %s failed: %s", owner, type(exc).__name__)
            raise Unavailable(
                "the worker that owns this user's partition did not answer", retry_after=1
            ) from None

    async def close(self) -> None:
        """Close the kept-alive connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit_per_host=CONNECTIONS_PER_PEER),
                # No proxy from the environment: the owner is on the workers' own network.
                trust_env=False,
            )
        return self._session
