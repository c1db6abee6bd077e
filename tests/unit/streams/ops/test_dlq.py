"""``intentstream dlq --unseal``: dead letters opened with the master key, shredded ones shut."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from streams.ops.dlq import DeadLetter, Unsealer, latest_ledgers
from streams.pipeline.crypto import DLQ_PURPOSE, RecordSealer, StateCipher, pack_record
from streams.pipeline.ledger import LedgerSealer, UserLedger
from streams.pipeline.working_set import USER_SEALED_DEAD_LETTER

MASTER = bytes(range(32))
HEADERS = {
    "reason": "unknown_event_type",
    "detail": "type: data.type must be one of [...]",
    "source_topic": "shop.events",
    "source_partition": "2",
    "source_offset": "41",
}


def sealed_for_user(user: bytes, key: bytes, value: bytes) -> tuple[bytes, bytes]:
    """(dead letter value, sealed ledger) as the pipeline writes them for ``user``."""
    cipher = StateCipher(MASTER)
    wrapped = cipher.new_wrapped_key(user)
    letter = bytes([USER_SEALED_DEAD_LETTER]) + cipher.seal(user, wrapped, pack_record(key, value))
    return letter, LedgerSealer(MASTER).seal(user, UserLedger(wrapped_key=wrapped))


def test_a_dead_letter_line_names_reason_source_and_detail() -> None:
    letter = DeadLetter(3, 17, HEADERS, b"\x01opaque")
    assert letter.line() == (
        "3@17 unknown_event_type from shop.events 2@41: type: data.type must be one of [...]"
    )


def test_unseal_opens_both_kinds_and_leaves_an_erased_users_shut() -> None:
    user, gone = b"a" * 32, b"b" * 32
    master_sealed = RecordSealer(MASTER, purpose=DLQ_PURPOSE).seal(None, b'{"oops')
    mine, ledger = sealed_for_user(user, b"u123", b'{"type": "teleport"}')
    theirs, their_ledger = sealed_for_user(gone, b"u9", b'{"type": "x"}')
    # The erased user's ledger was deleted: the changelog's latest record is a tombstone.
    ledgers = latest_ledgers([(user, ledger), (gone, their_ledger), (gone, None)])
    opened: Callable[[DeadLetter], str] = Unsealer(MASTER, ledgers).open

    assert opened(DeadLetter(0, 0, HEADERS, master_sealed)) == "key=null value='{\"oops'"
    assert (
        opened(DeadLetter(0, 1, {**HEADERS, "user": user.decode()}, mine))
        == "key='u123' value='{\"type\": \"teleport\"}'"
    )
    assert opened(DeadLetter(0, 2, {**HEADERS, "user": gone.decode()}, theirs)).startswith(
        "shredded"
    )


def test_a_wrong_master_key_opens_nothing() -> None:
    sealed = RecordSealer(MASTER, purpose=DLQ_PURPOSE).seal(b"u1", b"{}")
    line = Unsealer(bytes(32), {}).open(DeadLetter(0, 0, HEADERS, sealed))
    assert line.startswith("does not open:") and "u1" not in line


def test_a_user_new_since_the_start_is_read_again_while_following(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    user = b"c" * 32
    letter, ledger = sealed_for_user(user, b"u7", b"{}")
    dead = DeadLetter(0, 0, {**HEADERS, "user": user.decode()}, letter)
    reads: list[int] = []

    def reload() -> dict[bytes, bytes]:
        reads.append(1)
        return {user: ledger}

    unsealer = Unsealer(MASTER, {}, reload=reload)
    assert unsealer.misses(dead)
    unsealer.refresh()  # just loaded: not read again yet
    assert reads == []
    monkeypatch.setattr("streams.ops.dlq.RELOAD_SECONDS", 0.0)
    unsealer.refresh()
    assert reads == [1] and not unsealer.misses(dead)
    assert unsealer.open(dead) == "key='u7' value='{}'"
