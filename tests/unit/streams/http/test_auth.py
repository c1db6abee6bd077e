"""Bearer tokens: exactly the configured one, and none configured turns /v1 off."""

from __future__ import annotations

import pytest

from streams.http.auth import BearerToken
from streams.http.errors import ApiDisabled, Unauthorized

TOKEN = "s3cret-token-0123456789"


def test_the_configured_token_passes() -> None:
    BearerToken(TOKEN)(f"Bearer {TOKEN}")


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        TOKEN,
        f"bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
        f"Bearer {TOKEN} ",
        f"Basic {TOKEN}",
        "Bearer " + "é" * 8,
    ],
)
def test_anything_else_is_unauthorized(header: str | None) -> None:
    with pytest.raises(Unauthorized):
        BearerToken(TOKEN)(header)


def test_no_token_configured_refuses_every_request() -> None:
    check = BearerToken(None)
    assert not check.enabled
    with pytest.raises(ApiDisabled):
        check(f"Bearer {TOKEN}")


def test_the_comparison_takes_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The token is compared by ``hmac.compare_digest``, never with ``==``."""
    import streams.http.auth as auth

    seen: list[tuple[bytes, bytes]] = []

    def compare(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return a == b

    monkeypatch.setattr(auth.hmac, "compare_digest", compare)
    BearerToken(TOKEN)(f"Bearer {TOKEN}")
    assert seen == [(f"Bearer {TOKEN}".encode(), f"Bearer {TOKEN}".encode())]
