"""The API's server as a service of the worker: bound before the worker joins its group.

The socket is bound first (:func:`bind`), so that with ``http_port`` 0 the port is
known when the app is built: the app advertises :func:`advertised_url` to the
other workers (Faust's ``canonical_url``, carried in the group's metadata). The
service starts before the app, so ``/healthz`` answers while tables recover.
"""

from __future__ import annotations

import logging
import socket

from aiohttp import web
from mode import Service
from prometheus_client import CollectorRegistry

from streams.errors import ConfigurationError
from streams.http.auth import BearerToken
from streams.http.backend import WorkerBackend
from streams.http.proxy import Forwarder
from streams.http.server import ApiLimits, build_application
from streams.metrics.http import HttpMetrics
from streams.settings import Settings

log = logging.getLogger(__name__)

#: Addresses that mean "every interface", which other workers cannot dial.
ANY_ADDRESS = ("0.0.0.0", "::", "")


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port`` (0 = any free port).

    Raises:
        ConfigurationError: the address is taken or cannot be bound.
    """
    try:
        return socket.create_server((host, port), family=_family(host), backlog=512)
    except OSError as exc:
        raise ConfigurationError(
            f"the HTTP API cannot listen on {host}:{port} ({exc.strerror}): set "
            "INTENTSTREAM_HTTP_PORT to a free port, or 0 for any, and INTENTSTREAM_HTTP_HOST "
            "to an address of this machine"
        ) from exc


def advertised_url(settings: Settings, port: int) -> str:
    """The URL other workers reach this worker's API at.

    Examples:
        >>> advertised_url(Settings(http_host="127.0.0.1"), 8080)
        'http://127.0.0.1:8080'
        >>> advertised_url(Settings(http_host="0.0.0.0", http_advertised_host="w1"), 80)
        'http://w1:80'
    """
    host = settings.http_advertised_host
    if host is None:
        host = socket.gethostname() if settings.http_host in ANY_ADDRESS else settings.http_host
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    return f"http://{host}:{port}"


class ApiService(Service):
    """Serves ``application`` on ``sock`` from the worker's event loop; no access log."""

    def __init__(
        self, application: web.Application, *, sock: socket.socket, forwarder: Forwarder
    ) -> None:
        super().__init__()
        self._application = application
        self._sock = sock
        self._forwarder = forwarder
        self._runner: web.AppRunner | None = None

    async def on_start(self) -> None:
        # access_log=None: a path holds a raw user id, which must never reach a log.
        runner = web.AppRunner(self._application, access_log=None)
        await runner.setup()
        await web.SockSite(runner, self._sock).start()
        self._runner = runner
        host, port = self._sock.getsockname()[:2]
        log.info("HTTP API on %s:%d", host, port)

    async def on_stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self._forwarder.close()


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def api_service(
    settings: Settings, backend: WorkerBackend, *, sock: socket.socket, registry: CollectorRegistry
) -> ApiService:
    """The worker's API service over ``backend``, configured by ``settings``.

    Its metrics join ``registry`` (the worker's); the latest-list gauge reads the backend.
    """
    metrics = HttpMetrics(registry)
    metrics.latest_lists.set_function(backend.lists_held)
    token = settings.http_token.get_secret_value() if settings.http_token is not None else None
    if token is None:
        log.warning("no INTENTSTREAM_HTTP_TOKEN: the HTTP API serves only its probes")
    forwarder = Forwarder()
    application = build_application(
        backend,
        token=BearerToken(token),
        limits=ApiLimits(
            rate_per_second=settings.http_rate_per_second,
            burst=settings.http_rate_burst,
            max_body_bytes=settings.http_max_body_bytes,
            top_k=settings.top_k,
        ),
        metrics=metrics,
        forwarder=forwarder,
    )
    return ApiService(application, sock=sock, forwarder=forwarder)
