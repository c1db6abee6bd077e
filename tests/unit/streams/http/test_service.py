"""The API's socket and the URL a worker advertises."""

from __future__ import annotations

import pytest

from streams.errors import ConfigurationError
from streams.http.service import advertised_url, bind
from streams.settings import Settings


def test_port_0_binds_a_free_port_that_is_then_advertised() -> None:
    sock = bind("127.0.0.1", 0)
    try:
        port = sock.getsockname()[1]
        assert port > 0
        assert advertised_url(Settings(), port) == f"http://127.0.0.1:{port}"
    finally:
        sock.close()


def test_a_taken_port_is_a_configuration_error_naming_the_setting() -> None:
    taken = bind("127.0.0.1", 0)
    try:
        with pytest.raises(ConfigurationError, match="INTENTSTREAM_HTTP_PORT"):
            bind("127.0.0.1", taken.getsockname()[1])
    finally:
        taken.close()


def test_every_interface_advertises_the_host_name_or_the_configured_one() -> None:
    import socket

    assert advertised_url(Settings(http_host="0.0.0.0"), 80) == f"http://{socket.gethostname()}:80"
    assert advertised_url(Settings(http_host="::1"), 80) == "http://[::1]:80"
    named = Settings(http_host="0.0.0.0", http_advertised_host="worker-3.internal")
    assert advertised_url(named, 9480) == "http://worker-3.internal:9480"


def test_a_short_token_is_refused_at_startup() -> None:
    with pytest.raises(ValueError, match="16 characters"):
        Settings(http_token="short")
