"""Each user's key record: the wrapped data key beside a content-free privacy ledger.

The sealed state dies with an erasure (its data key is destroyed), but three facts
about a pseudonym must outlive it, or an erasure could be undone and a DP bound
reset (DESIGN.md privacy model):

* ``erased_before_ms``: the broker timestamp of the last erase request applied. No
  event stamped at or before it is applied afterwards, however late it arrives
  (lag, another topic read first, a crash and redelivery).
* ``window_start`` and ``spent_units``: the privacy window the user was last
  charged in and what they spent there, so erasing, a state that fails to open or
  a restart cannot let them contribute to that window again.
* ``last_seen``: when the user was last active (coarse, whole seconds), so the
  state of inactive users expires.
* ``partition``: the input partition the user's records arrive on, fixed by the
  first record that wrote the ledger. A record for the user on another partition
  (a producer with another partitioner) is refused: applied, it would split the
  user's state, budget and erasure across partitions and workers.

None of it says what the user did. The record lives in the ``user_keys`` table,
whose changelog compacts within seconds, so the superseded wrapped key of an
erased user is gone from the broker soon after the erasure. It is sealed with
AES-GCM under a key derived from the master key, the pseudonym as associated data,
so it can neither be read nor moved to another user.

Format::

    sealed = format (1) | nonce (12) | AES-GCM(ledger key, body) (n + 16 tag)
    body   = erased_before_ms (8) | window_start (8, float) | spent_units (8)
             | last_seen (8) | partition (4, format 3 only) | wrapped data key (0 or 61)

Format 2 ledgers (written before the partition was kept) open with partition -1.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag

from streams.errors import StateDecryptionError
from streams.pipeline.crypto import NONCE_BYTES, TAG_BYTES, WRAPPED_KEY_BYTES, derived_aead

#: HKDF purpose of the key that seals ledgers.
LEDGER_PURPOSE = b"user ledger"
#: First byte of a sealed ledger.
LEDGER_FORMAT = 3
_HEADER = bytes([LEDGER_FORMAT])
_FIXED = struct.Struct(">qdqqi")
#: The body of format 2, without the partition.
_FIXED_2 = struct.Struct(">qdqq")
_BODY = 1 + NONCE_BYTES


@dataclass(slots=True)
class UserLedger:
    """What a worker keeps about a pseudonym outside its sealed state (module docstring)."""

    wrapped_key: bytes | None = None
    erased_before_ms: int = -1
    window_start: float = 0.0
    spent_units: int = 0
    last_seen: int = 0
    partition: int = -1

    def to_bytes(self) -> bytes:
        """The plaintext body (sealed by :class:`LedgerSealer`)."""
        fixed = _FIXED.pack(
            self.erased_before_ms,
            self.window_start,
            self.spent_units,
            self.last_seen,
            self.partition,
        )
        return fixed + (self.wrapped_key or b"")

    @classmethod
    def from_bytes(cls, body: bytes, *, format_: int = LEDGER_FORMAT) -> UserLedger:
        """Inverse of :meth:`to_bytes` (of format ``format_``).

        Raises:
            StateDecryptionError: the body has neither length a ledger can have.
        """
        fixed = _FIXED if format_ == LEDGER_FORMAT else _FIXED_2
        if len(body) not in (fixed.size, fixed.size + WRAPPED_KEY_BYTES):
            raise StateDecryptionError(f"a ledger body of {len(body)} bytes")
        erased, window, spent, seen, *partition = fixed.unpack_from(body)
        return cls(body[fixed.size :] or None, erased, window, spent, seen, *partition)


class LedgerSealer:
    """Seals and opens ledgers under a key derived from the master key.

    Examples:
        >>> sealer = LedgerSealer(bytes(32))
        >>> sealed = sealer.seal(b"p1", UserLedger(erased_before_ms=5))
        >>> sealer.open(b"p1", sealed).erased_before_ms
        5
        >>> sealer.open(b"p2", sealed)  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        streams.errors.StateDecryptionError: a ledger failed authentication
    """

    def __init__(self, master_key: bytes) -> None:
        self._aead = derived_aead(master_key, LEDGER_PURPOSE)

    def seal(self, pseudonym: bytes, ledger: UserLedger) -> bytes:
        """The stored form of ``ledger`` for ``pseudonym``: different on every call."""
        nonce = os.urandom(NONCE_BYTES)
        return _HEADER + nonce + self._aead.encrypt(nonce, ledger.to_bytes(), _HEADER + pseudonym)

    def open(self, pseudonym: bytes, sealed: bytes) -> UserLedger:
        """The ledger :meth:`seal` stored for ``pseudonym``.

        Raises:
            StateDecryptionError: another format, master key or user, tampered or truncated.
        """
        if len(sealed) < _BODY + TAG_BYTES or sealed[0] not in (2, LEDGER_FORMAT):
            raise StateDecryptionError("not a ledger of a known format")
        try:
            body = self._aead.decrypt(sealed[1:_BODY], sealed[_BODY:], sealed[:1] + pseudonym)
        except InvalidTag:
            raise StateDecryptionError(
                "a ledger failed authentication (wrong master key or user, or tampered)"
            ) from None
        return UserLedger.from_bytes(body, format_=sealed[0])


def inactive_users(
    ledgers: Iterable[tuple[bytes, bytes]], sealer: LedgerSealer, *, seen_before: float
) -> list[bytes]:
    """The pseudonyms whose ledger says they were last active before ``seen_before``.

    A ledger that does not open is left alone: deleting it could reset a spend.
    """
    stale = []
    for pseudonym, sealed in ledgers:
        try:
            ledger = sealer.open(pseudonym, sealed)
        except StateDecryptionError:
            continue
        if ledger.last_seen < seen_before:
            stale.append(pseudonym)
    return stale
