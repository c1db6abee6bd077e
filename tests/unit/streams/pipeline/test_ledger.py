"""The ledger that outlives a user's state: sealed, bound to its user, and expiring."""

from __future__ import annotations

import struct

import pytest

from streams.errors import StateDecryptionError
from streams.pipeline.crypto import NONCE_BYTES, StateCipher, derived_aead
from streams.pipeline.ledger import LEDGER_PURPOSE, LedgerSealer, UserLedger, inactive_users

SEALER = LedgerSealer(bytes(32))


def test_a_ledger_round_trips_with_and_without_a_key() -> None:
    wrapped = StateCipher(bytes(32)).new_wrapped_key(b"p")
    for ledger in (UserLedger(wrapped, 5, 3600.0, 7, 9, 3), UserLedger(erased_before_ms=1)):
        assert SEALER.open(b"p", SEALER.seal(b"p", ledger)) == ledger


def test_a_ledger_written_before_partitions_were_kept_opens_with_partition_unknown() -> None:
    wrapped = StateCipher(bytes(32)).new_wrapped_key(b"p")
    body = struct.pack(">qdqq", 5, 3600.0, 7, 9) + wrapped
    nonce = bytes(NONCE_BYTES)
    sealed = (
        b"\x02" + nonce + derived_aead(bytes(32), LEDGER_PURPOSE).encrypt(nonce, body, b"\x02p")
    )
    assert SEALER.open(b"p", sealed) == UserLedger(wrapped, 5, 3600.0, 7, 9, partition=-1)


def test_a_ledger_does_not_open_for_another_user_key_or_after_tampering() -> None:
    sealed = SEALER.seal(b"p", UserLedger(erased_before_ms=5))
    for user, blob, sealer in (
        (b"q", sealed, SEALER),
        (b"p", sealed[:-1] + bytes([sealed[-1] ^ 1]), SEALER),
        (b"p", sealed, LedgerSealer(bytes(range(32)))),
    ):
        with pytest.raises(StateDecryptionError):
            sealer.open(user, blob)


def test_inactive_users_are_those_last_seen_before_the_cut() -> None:
    ledgers = [(b"old", SEALER.seal(b"old", UserLedger(last_seen=100)))]
    ledgers += [(b"new", SEALER.seal(b"new", UserLedger(last_seen=900)))]
    ledgers += [(b"bad", b"\x02" + bytes(40))]
    assert inactive_users(ledgers, SEALER, seen_before=500.0) == [b"old"]
