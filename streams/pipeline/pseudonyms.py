"""Keyed pseudonyms for user ids (DESIGN.md privacy model).

A raw user id may appear only in ``shop.events``, ``shop.recommendations`` and
``shop.privacy.*``. Everything else (tables, changelogs, logs, metrics, training
data) sees ``HMAC-SHA256(key, user_id)`` instead; without the key the mapping can
neither be inverted nor recomputed. The key comes from configuration
(``INTENTSTREAM_PSEUDONYM_KEY`` or the key file), never from code.

Session ids get pseudonyms in their own domain (a key derived from the same
secret), so a shop that reuses a user id as a session id (or the other way round)
does not link the two kinds of pseudonym.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from streams.errors import ConfigurationError
from streams.pipeline.keys import load_key
from streams.settings import Settings

#: Bytes of the digest kept: 128 bits makes collisions negligible for any shop.
PSEUDONYM_BYTES = 16
MIN_KEY_BYTES = 16
#: Derives the session-pseudonym key from the pseudonym key.
SESSION_DOMAIN = b"intentstream session pseudonyms"


class Pseudonymizer:
    """Maps raw user ids to fixed-length pseudonyms (hex) with one key.

    Examples:
        >>> p = Pseudonymizer(b"0123456789abcdef")
        >>> p.one("u123") == p.one("u123") != p.one("u124")
        True
        >>> len(p.one("u123"))
        32
        >>> p.sessions(["u123"]) == p.many(["u123"])
        False
    """

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ConfigurationError(f"pseudonym key must have >= {MIN_KEY_BYTES} bytes")
        self._key = key
        self._session_key = hmac.digest(key, SESSION_DOMAIN, "sha256")

    def one(self, user_id: str) -> str:
        """The pseudonym of one raw user id."""
        digest = hmac.digest(self._key, user_id.encode("utf-8"), "sha256")
        return digest[:PSEUDONYM_BYTES].hex()

    def many(self, user_ids: Iterable[str]) -> list[str]:
        """Pseudonyms of a batch of raw user ids, in order."""
        return _digests(self._key, user_ids)

    def sessions(self, session_ids: Iterable[str]) -> list[str]:
        """Pseudonyms of a batch of raw session ids, in order, in the session domain."""
        return _digests(self._session_key, session_ids)


def _digests(key: bytes, ids: Iterable[str]) -> list[str]:
    """One keyed hash per distinct id: a shopper's events in a batch share theirs."""
    ids = list(ids)
    digests = {
        raw: hmac.digest(key, raw.encode("utf-8"), "sha256")[:PSEUDONYM_BYTES].hex()
        for raw in dict.fromkeys(ids)
    }
    return [digests[raw] for raw in ids]


def load_pseudonym_key(settings: Settings, *, create: bool = False) -> bytes:
    """The HMAC key from the settings or the key file.

    Args:
        settings: ``pseudonym_key`` wins; else ``pseudonym_key_file`` is read.
        create: make a new random key file (mode 0600) when there is none; the
            demo uses this so a first run works without set-up.

    Raises:
        ConfigurationError: no key is configured and ``create`` is false.
    """
    return load_key(
        settings.pseudonym_key,
        settings.pseudonym_key_file,
        create=create,
        env_name="INTENTSTREAM_PSEUDONYM_KEY",
    )
