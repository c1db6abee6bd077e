"""``intentstream dlq``: the dead letters, each with its reason, opened with the master key.

A dead letter's reason, detail and source position are readable headers; its value is
the rejected record's key and bytes, sealed (``streams.pipeline.records``): under the
named user's own data key (first byte 2, their pseudonym in the ``user`` header), so
an erasure shreds it, or else under a key derived from the master key (first byte 1).
``--unseal`` opens both with the master key: the user's data key is unwrapped from
their ledger in the key table's changelog; an erased or expired user's letters stay
shut. Without ``--unseal`` nothing is decrypted and no raw id is shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TextIO

from aiokafka import ConsumerRecord

from streams.errors import StateDecryptionError
from streams.kafka.admin import changelog_topic
from streams.kafka.feed import read_to_end
from streams.kafka.tables import KEY_TABLE
from streams.ops.reading import read_topic
from streams.pipeline.crypto import (
    DLQ_PURPOSE,
    RecordSealer,
    StateCipher,
    load_master_key,
    unpack_record,
)
from streams.pipeline.ledger import LedgerSealer
from streams.pipeline.working_set import USER_SEALED_DEAD_LETTER
from streams.settings import Settings

#: Characters of an opened key or value shown on a dead letter's line.
SHOWN_CHARS = 500
#: Least seconds between two readings of the key changelog while following.
RELOAD_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record of the dead-letter topic, its headers decoded."""

    partition: int
    offset: int
    headers: Mapping[str, str]
    sealed: bytes

    @classmethod
    def of(cls, record: ConsumerRecord[bytes, bytes]) -> DeadLetter:
        """The dead letter of a consumed record."""
        headers = {name: value.decode("utf-8", "replace") for name, value in record.headers}
        return cls(record.partition, record.offset, headers, record.value or b"")

    @property
    def user(self) -> bytes | None:
        """The pseudonym whose data key sealed it, if one did."""
        user = self.headers.get("user")
        return user.encode() if user else None

    def line(self, opened: str | None = None) -> str:
        """One line: position, reason, source, detail, and what ``--unseal`` found.

        Examples:
            >>> DeadLetter(0, 7, {"reason": "invalid_json", "detail": "bad", "source_topic":
            ...     "shop.events", "source_partition": "3", "source_offset": "42"}, b"").line()
            '0@7 invalid_json from shop.events 3@42: bad'
        """
        h = self.headers
        source = f"{h.get('source_topic', '?')} {h.get('source_partition', '?')}@" + h.get(
            "source_offset", "?"
        )
        text = f"{self.partition}@{self.offset} {h.get('reason', '?')} from {source}: "
        text += h.get("detail", "")
        return text if opened is None else f"{text} | {opened}"


class Unsealer:
    """Opens dead letters with the master key and the users' ledgers.

    Args:
        master_key: the deployment's 32-byte master key.
        ledgers: pseudonym -> sealed ledger, the latest of the key table's changelog
            (a user with none was erased or expired).
        reload: reads the ledgers again, for a letter of a user not among them
            (``--follow``: the user may be new); at most every :data:`RELOAD_SECONDS`.

    Examples:
        >>> sealed = RecordSealer(bytes(32), purpose=DLQ_PURPOSE).seal(b"u1", b"{oops")
        >>> Unsealer(bytes(32), {}).open(DeadLetter(0, 0, {}, sealed))
        "key='u1' value='{oops'"
        >>> Unsealer(bytes(32), {}).open(DeadLetter(0, 0, {"user": "ab"}, b"\\x02..."))
        'shredded: the user was erased or expired, their key destroyed'
    """

    def __init__(
        self,
        master_key: bytes,
        ledgers: Mapping[bytes, bytes],
        *,
        reload: Callable[[], Mapping[bytes, bytes]] | None = None,
    ) -> None:
        self._master = RecordSealer(master_key, purpose=DLQ_PURPOSE)
        self._cipher = StateCipher(master_key)
        self._ledgers = LedgerSealer(master_key)
        self._sealed_ledgers = ledgers
        self._reload = reload
        self._loaded_at = time.monotonic()

    def misses(self, letter: DeadLetter) -> bool:
        """Whether ``letter`` was sealed for a user whose ledger is not known here."""
        user = letter.user
        return user is not None and user not in self._sealed_ledgers

    def refresh(self) -> None:
        """Read the ledgers again (blocking), unless that was done a moment ago."""
        if self._reload is None or time.monotonic() - self._loaded_at < RELOAD_SECONDS:
            return
        self._sealed_ledgers = self._reload()
        self._loaded_at = time.monotonic()

    def open(self, letter: DeadLetter) -> str:
        """The original key and value, or why they cannot be read."""
        try:
            key, value = self._open(letter)
        except StateDecryptionError as exc:
            return f"does not open: {exc}"
        except _Shredded:
            return "shredded: the user was erased or expired, their key destroyed"
        return f"key={_shown(key)} value={_shown(value)}"

    def _open(self, letter: DeadLetter) -> tuple[bytes | None, bytes | None]:
        user = letter.user
        if user is None or letter.sealed[:1] != bytes([USER_SEALED_DEAD_LETTER]):
            return self._master.open(letter.sealed)
        sealed_ledger = self._sealed_ledgers.get(user)
        if sealed_ledger is None:
            raise _Shredded
        wrapped = self._ledgers.open(user, sealed_ledger).wrapped_key
        if wrapped is None:
            raise _Shredded
        return unpack_record(self._cipher.open(user, wrapped, letter.sealed[1:]))


class _Shredded(Exception):
    """The user's data key is gone: the letter cannot be opened by anyone."""


def latest_ledgers(records: list[tuple[bytes | None, bytes | None]]) -> dict[bytes, bytes]:
    """pseudonym -> latest sealed ledger of the key changelog's ``(key, value)`` records.

    Examples:
        >>> latest_ledgers([(b"a", b"1"), (b"b", b"2"), (b"a", None)])
        {b'b': b'2'}
    """
    latest: dict[bytes, bytes | None] = {}
    for key, value in records:
        if key is not None:
            latest[key] = value
    return {key: value for key, value in latest.items() if value is not None}


def _shown(data: bytes | None) -> str:
    if data is None:
        return "null"
    text = data.decode("utf-8", "backslashreplace")
    return repr(text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "…")


def unsealer(settings: Settings) -> Unsealer:
    """An unsealer with the settings' master key and the key changelog's ledgers.

    Raises:
        ConfigurationError: no master key is configured.
        aiokafka.errors.KafkaError: the changelog could not be read.
    """
    master_key = load_master_key(settings)

    def ledgers() -> dict[bytes, bytes]:
        changelog = read_to_end(settings, changelog_topic(settings, KEY_TABLE))
        return latest_ledgers([(r.key, r.value) for r in changelog])

    return Unsealer(master_key, ledgers(), reload=ledgers)


async def print_dead_letters(
    settings: Settings,
    *,
    out: TextIO,
    follow: bool = False,
    limit: int | None = None,
    opener: Unsealer | None = None,
) -> int:
    """Print one line per dead letter (opened with ``opener`` when given); how many.

    Stops at the topic's end unless ``follow``, or after ``limit`` letters.
    """
    printed = 0
    if limit is not None and limit <= 0:
        return printed
    records = read_topic(
        settings, settings.dlq_topic, follow=follow, variable="INTENTSTREAM_DLQ_TOPIC"
    )
    async with contextlib.aclosing(records):  # stops the consumer on break
        async for record in records:
            letter = DeadLetter.of(record)
            if opener is not None and follow and opener.misses(letter):
                await asyncio.to_thread(opener.refresh)  # a user new since the start
            out.write(letter.line(None if opener is None else opener.open(letter)) + "\n")
            out.flush()
            printed += 1
            if limit is not None and printed >= limit:
                break
    return printed
