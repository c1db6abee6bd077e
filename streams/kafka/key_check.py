"""Key check values: a worker started with the wrong keys stops, instead of resetting every user.

A worker whose master key is not the one that sealed the stored ledgers could
open none of them, and a wrong pseudonym key maps every shopper to a new
pseudonym: either way every user would silently start afresh. So the first
worker of a deployment stores a check value of each key in a small compacted
topic, and every worker compares its own before it starts. A check value is
the first 8 bytes of HMAC-SHA256(key, a fixed label): it tells whether two keys
are equal and nothing else about them.
"""

from __future__ import annotations

import asyncio
import hmac
import logging

import orjson

from streams.errors import ConfigurationError
from streams.kafka.feed import read_to_end
from streams.kafka.produce import produce_records
from streams.kafka.security import client_security
from streams.settings import Settings

log = logging.getLogger(__name__)

CHECK_LABEL = b"intentstream key check"
CHECK_KEY = b"key-check"
#: Which setting sets each checked key, for the error message.
KEY_SETTINGS = {"master": "INTENTSTREAM_MASTER_KEY", "pseudonym": "INTENTSTREAM_PSEUDONYM_KEY"}


def key_check_topic(settings: Settings) -> str:
    """The compacted one-partition topic holding the deployment's check values."""
    return f"{settings.app_id}-key-check"


def check_values(*, master: bytes, pseudonym: bytes) -> dict[str, str]:
    """The check value of each key (hex).

    Examples:
        >>> values = check_values(master=bytes(32), pseudonym=b"p" * 32)
        >>> sorted(values), len(values["master"])
        (['master', 'pseudonym'], 16)
        >>> values == check_values(master=bytes(32), pseudonym=b"q" * 32)
        False
    """
    keys = {"master": master, "pseudonym": pseudonym}
    return {name: hmac.digest(key, CHECK_LABEL, "sha256")[:8].hex() for name, key in keys.items()}


def read_check(settings: Settings) -> dict[str, str] | None:
    """The stored check values, or None when the deployment has none yet."""
    stored = None
    for record in read_to_end(settings, key_check_topic(settings)):
        if record.key == CHECK_KEY and record.value:
            stored = orjson.loads(record.value)
    return stored


def write_check(settings: Settings, values: dict[str, str]) -> None:
    """Store ``values`` as the deployment's check values."""
    record = [(CHECK_KEY, orjson.dumps(values))]
    topic = key_check_topic(settings)
    asyncio.run(produce_records(settings.bootstrap, topic, record, **client_security(settings)))


def verify_keys(settings: Settings, *, master: bytes, pseudonym: bytes) -> None:
    """Stop with a clear error unless the keys are the deployment's (stores them if first).

    Raises:
        ConfigurationError: a key differs from the one the stored state was made with.
    """
    mine = check_values(master=master, pseudonym=pseudonym)
    stored = read_check(settings)
    if stored is None:
        write_check(settings, mine)
        log.info("stored the key check values of this deployment")
        return
    wrong = [name for name in mine if stored.get(name) != mine[name]]
    if wrong:
        names = " and ".join(KEY_SETTINGS[name] for name in wrong)
        raise ConfigurationError(
            f"{names} (or the key file) is not the key this deployment's state was made with "
            f"(key check value differs): start with the original key, or rotate the master key "
            f"with `intentstream rewrap`"
        )
