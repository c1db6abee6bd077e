"""The client's unit tests reach no cluster: the admin client's login check always passes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

import streams.client.connection as connection_module
from streams.settings import Settings


@pytest.fixture(autouse=True)
def cluster_lets_us_in(monkeypatch: pytest.MonkeyPatch) -> None:
    """``connect`` checks the login with an admin client first; here it has nothing to check."""

    @contextlib.contextmanager
    def admin_client(settings: Settings) -> Iterator[None]:
        yield None

    monkeypatch.setattr(connection_module, "admin_client", admin_client)
