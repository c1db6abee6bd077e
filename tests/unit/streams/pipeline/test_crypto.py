"""Encryption at rest: per-user AES-GCM state, wrapped keys, crypto-shredding, key loading."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.errors import ConfigurationError, StateDecryptionError
from streams.pipeline.crypto import (
    SEAL_OVERHEAD,
    WRAPPED_KEY_BYTES,
    StateCipher,
    load_master_key,
)
from streams.settings import Settings

MASTER = bytes(range(32))
ALICE, BOB = b"pseudonym-alice", b"pseudonym-bob"
STATE = b'{"recent":[1,2,3],"counts":{"7":2}}' * 8  # ~300 bytes, like one user's state


@pytest.fixture
def cipher() -> StateCipher:
    return StateCipher(MASTER)


@given(plaintext=st.binary(max_size=4096), pseudonym=st.binary(min_size=1, max_size=64))
def test_round_trip_of_any_bytes(plaintext: bytes, pseudonym: bytes) -> None:
    cipher = StateCipher(MASTER)
    wrapped = cipher.new_wrapped_key(pseudonym)
    sealed = cipher.seal(pseudonym, wrapped, plaintext)
    assert cipher.open(pseudonym, wrapped, sealed) == plaintext
    # A fresh cipher (another worker, after a restart) with an empty cache opens it too.
    assert StateCipher(MASTER).open(pseudonym, wrapped, sealed) == plaintext


def test_only_sizes_leak(cipher: StateCipher) -> None:
    wrapped = cipher.new_wrapped_key(ALICE)
    first, second = cipher.seal(ALICE, wrapped, STATE), cipher.seal(ALICE, wrapped, STATE)
    assert first != second  # fresh nonce per record
    assert len(first) == len(second) == len(STATE) + SEAL_OVERHEAD
    for sealed in (first, second):
        assert STATE[:16] not in sealed and b"recent" not in sealed
        assert ALICE not in sealed and ALICE not in wrapped
    assert len(wrapped) == WRAPPED_KEY_BYTES
    assert len(cipher.seal(ALICE, wrapped, b"")) == SEAL_OVERHEAD


def test_any_tampered_byte_is_detected(cipher: StateCipher) -> None:
    wrapped = cipher.new_wrapped_key(ALICE)
    sealed = cipher.seal(ALICE, wrapped, b"short state")
    for i in range(len(sealed)):
        tampered = bytearray(sealed)
        tampered[i] ^= 0x01
        with pytest.raises(StateDecryptionError):
            cipher.open(ALICE, wrapped, bytes(tampered))


def test_any_tampered_byte_of_the_wrapped_key_is_detected() -> None:
    wrapped = StateCipher(MASTER).new_wrapped_key(ALICE)
    sealed = StateCipher(MASTER).seal(ALICE, wrapped, STATE)
    for i in range(len(wrapped)):
        tampered = bytearray(wrapped)
        tampered[i] ^= 0x80
        with pytest.raises(StateDecryptionError):
            StateCipher(MASTER).open(ALICE, bytes(tampered), sealed)


@pytest.mark.parametrize("cut", [0, 1, SEAL_OVERHEAD - 1, SEAL_OVERHEAD, -1])
def test_truncated_records_are_refused(cipher: StateCipher, cut: int) -> None:
    wrapped = cipher.new_wrapped_key(ALICE)
    sealed = cipher.seal(ALICE, wrapped, STATE)
    with pytest.raises(StateDecryptionError):
        cipher.open(ALICE, wrapped, sealed[:cut])


def test_unknown_record_version_is_refused(cipher: StateCipher) -> None:
    wrapped = cipher.new_wrapped_key(ALICE)
    sealed = cipher.seal(ALICE, wrapped, STATE)
    with pytest.raises(StateDecryptionError, match="format"):
        cipher.open(ALICE, wrapped, b"\x02" + sealed[1:])


def test_records_and_keys_cannot_move_to_another_user(cipher: StateCipher) -> None:
    alice_key, bob_key = cipher.new_wrapped_key(ALICE), cipher.new_wrapped_key(BOB)
    sealed = cipher.seal(ALICE, alice_key, STATE)
    with pytest.raises(StateDecryptionError):
        cipher.open(BOB, bob_key, sealed)  # Bob's own key
    with pytest.raises(StateDecryptionError):
        cipher.open(BOB, alice_key, sealed)  # Alice's key and record filed under Bob
    with pytest.raises(StateDecryptionError):
        cipher.open(ALICE, bob_key, sealed)  # Bob's key filed under Alice


def test_wrong_master_key_opens_nothing() -> None:
    cipher = StateCipher(MASTER)
    wrapped = cipher.new_wrapped_key(ALICE)
    sealed = cipher.seal(ALICE, wrapped, STATE)
    with pytest.raises(StateDecryptionError):
        StateCipher(bytes(32)).open(ALICE, wrapped, sealed)
    with pytest.raises(StateDecryptionError):
        StateCipher(bytes(32)).seal(ALICE, wrapped, STATE)


def test_crypto_shredding_makes_old_records_unreadable(cipher: StateCipher) -> None:
    wrapped = cipher.new_wrapped_key(ALICE)
    sealed = [cipher.seal(ALICE, wrapped, STATE + bytes([i])) for i in range(3)]
    # Erasure: the wrapped key is deleted from its table and the cache is dropped.
    del wrapped
    cipher.forget(ALICE)
    # What is left (the master key, the sealed records, a new key for the same
    # pseudonym when the user comes back) opens none of the old records.
    comeback = cipher.new_wrapped_key(ALICE)
    for record in sealed:
        with pytest.raises(StateDecryptionError):
            cipher.open(ALICE, comeback, record)
        with pytest.raises(StateDecryptionError):
            StateCipher(MASTER).open(ALICE, comeback, record)
    assert cipher.open(ALICE, comeback, cipher.seal(ALICE, comeback, STATE)) == STATE


def test_forget_drops_the_cached_key() -> None:
    cipher = StateCipher(MASTER)
    wrapped = cipher.new_wrapped_key(ALICE)
    sealed = cipher.seal(ALICE, wrapped, STATE)
    cipher.forget(ALICE)
    cipher.forget(ALICE)  # idempotent
    assert cipher._cache == {}
    assert cipher.open(ALICE, wrapped, sealed) == STATE  # unwrapped again while the key exists


def test_cache_is_bounded_and_least_recently_used_goes_first() -> None:
    cipher = StateCipher(MASTER, cache_size=2)
    keys = {p: cipher.new_wrapped_key(p) for p in (b"a", b"b")}
    cipher.seal(b"a", keys[b"a"], STATE)  # a is now the most recent
    keys[b"c"] = cipher.new_wrapped_key(b"c")
    assert list(cipher._cache) == [b"a", b"c"]
    sealed = cipher.seal(b"b", keys[b"b"], STATE)  # evicted: unwrapped again
    assert cipher.open(b"b", keys[b"b"], sealed) == STATE
    assert list(cipher._cache) == [b"c", b"b"]


def test_master_key_rotation_rewraps_keys_and_keeps_records() -> None:
    old, new = StateCipher(MASTER), StateCipher(bytes(32), key_version=2)
    wrapped = old.new_wrapped_key(ALICE)
    sealed = old.seal(ALICE, wrapped, STATE)
    rewrapped = old.rewrap(ALICE, wrapped, to=new)
    assert rewrapped[0] == 2
    assert new.open(ALICE, rewrapped, sealed) == STATE
    with pytest.raises(StateDecryptionError, match="version"):
        new.open(ALICE, wrapped, sealed)
    with pytest.raises(StateDecryptionError):
        old.rewrap(BOB, wrapped, to=new)


@pytest.mark.parametrize("bad", [b"", b"k" * 16, b"k" * 31, b"k" * 33, b"k" * 64])
def test_master_keys_of_the_wrong_length_are_refused(bad: bytes) -> None:
    with pytest.raises(ConfigurationError):
        StateCipher(bad)


def test_bad_cipher_options_are_refused() -> None:
    for options in ({"key_version": 0}, {"key_version": 256}, {"cache_size": 0}):
        with pytest.raises(ValueError):
            StateCipher(MASTER, **options)  # type: ignore[arg-type]


def test_master_key_from_settings_wins_over_the_file(tmp_path: Path) -> None:
    settings = Settings(master_key="ab" * 32, master_key_file=tmp_path / "none")
    assert load_master_key(settings) == b"\xab" * 32


def test_master_key_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INTENTSTREAM_MASTER_KEY", "CD" * 32)
    settings = Settings(master_key_file=tmp_path / "none")
    assert load_master_key(settings) == b"\xcd" * 32
    assert settings.as_environment()["INTENTSTREAM_MASTER_KEY"] == "CD" * 32
    assert "CD" * 32 not in repr(settings) + str(settings.redacted())


def test_missing_master_key_is_an_error_unless_asked_to_create(tmp_path: Path) -> None:
    settings = Settings(master_key_file=tmp_path / "keys" / "master.key")
    with pytest.raises(ConfigurationError, match="INTENTSTREAM_MASTER_KEY"):
        load_master_key(settings)
    key = load_master_key(settings, create=True)
    assert len(key) == 32
    assert stat.S_IMODE(settings.master_key_file.stat().st_mode) == 0o600
    assert load_master_key(settings) == key
    assert load_master_key(settings, create=True) == key  # never overwritten
    assert list(settings.master_key_file.parent.iterdir()) == [settings.master_key_file]


@pytest.mark.parametrize(
    "text", ["ab" * 16, "ab" * 33, "zz" * 32, "k" * 32, "ab" * 31 + "a", "é" * 64]
)
def test_master_keys_that_are_not_64_hex_digits_are_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "master.key"
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    for settings in (Settings(master_key_file=path), Settings(master_key=text)):
        with pytest.raises(ConfigurationError, match="64 hex digits") as caught:
            load_master_key(settings)
        assert text not in str(caught.value)
        assert caught.value.__cause__ is None


def test_key_file_with_whitespace_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    path.write_text("\n" + "0f" * 32 + "\n")
    path.chmod(0o600)
    assert load_master_key(Settings(master_key_file=path)) == b"\x0f" * 32


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    path.write_text("0f" * 32)
    path.chmod(0o644)
    with pytest.raises(ConfigurationError, match="chmod 600") as refused:
        load_master_key(Settings(master_key_file=path))
    assert "0f" * 32 not in str(refused.value)
