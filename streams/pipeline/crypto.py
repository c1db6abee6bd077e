"""Encryption at rest of per-user state (DESIGN.md privacy model).

Envelope encryption with AES-256-GCM (``cryptography``):

* Every user (pseudonym) has their own random 256-bit **data key**. It is stored
  only *wrapped*: encrypted under the **master key** from configuration
  (``INTENTSTREAM_MASTER_KEY`` or the key file, see :func:`load_master_key`).
* Each state record is sealed under its user's data key with a fresh random
  96-bit nonce. A reader of the tables or changelog topics without the master
  key learns only record sizes: a sealed record is exactly
  :data:`SEAL_OVERHEAD` bytes longer than its plaintext.
* The pseudonym is associated data of both the wrapped key and every record, so
  neither can be moved to another user: it fails to open there.

Formats (all lengths in bytes)::

    wrapped key = key version (1) | nonce (12) | AES-GCM(master key, data key) (32 + 16 tag)
    sealed      = format (1)      | nonce (12) | AES-GCM(data key, plaintext)  (n + 16 tag)

The associated data is the leading byte followed by the pseudonym, so the
version byte is authenticated too. Random nonces are safe for up to 2**32
records per data key (NIST SP 800-38D, section 8.3), which is per user here.

**Master key rotation.** The first byte of a wrapped key names the master key
that wrapped it. To rotate, configure the new key under a new version, and
re-wrap every stored data key with :meth:`StateCipher.rewrap` (old cipher to new
cipher). Sealed records never need re-encryption, since their data keys do not
change; only the small wrapped keys are rewritten. Destroy the old master key
once no wrapped key of its version remains.

**Crypto-shredding** (erasure): delete the user's wrapped key and call
:meth:`StateCipher.forget` on every worker that may cache it. Every record
sealed under that key, including copies in changelog segments that compaction
has not yet removed and in backups, can then no longer be opened by anyone: a
new data key for the same pseudonym opens none of them.

Not covered: AES-GCM does not stop someone who can write to a topic from
replaying an *older* sealed record of the same user (a rollback); the master key
and the cached data keys live in the worker's memory.
"""

from __future__ import annotations

import os
from collections import OrderedDict

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from streams.errors import ConfigurationError, StateDecryptionError
from streams.pipeline.keys import load_key
from streams.settings import Settings

#: AES-256: bytes of the master key and of every data key.
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
#: First byte of every sealed record (the record format).
RECORD_VERSION = 1
#: Bytes a sealed record adds to its plaintext: format, nonce and tag.
SEAL_OVERHEAD = 1 + NONCE_BYTES + TAG_BYTES
#: Length of every wrapped data key.
WRAPPED_KEY_BYTES = 1 + NONCE_BYTES + KEY_BYTES + TAG_BYTES
#: Unwrapped data keys kept in memory; the least recently used is dropped first.
DEFAULT_CACHE_SIZE = 65_536

_RECORD_HEADER = bytes([RECORD_VERSION])
_BODY = 1 + NONCE_BYTES


class StateCipher:
    """Seals and opens per-user state under wrapped per-user data keys.

    One instance per worker process (it is not thread-safe). Unwrapped data
    keys are cached in a bounded LRU keyed by pseudonym, so a hot loop unwraps
    each user's key once.

    Args:
        master_key: the 32-byte AES-256 master key, e.g. from :func:`load_master_key`.
        key_version: 1-255, written into every key this cipher wraps; bump it
            when rotating the master key.
        cache_size: most unwrapped data keys kept in memory.

    Raises:
        ConfigurationError: the master key is not 32 bytes long.
        ValueError: ``key_version`` or ``cache_size`` is out of range.

    Examples:
        >>> cipher = StateCipher(bytes(32))
        >>> wrapped = cipher.new_wrapped_key(b"user-pseudonym")
        >>> sealed = cipher.seal(b"user-pseudonym", wrapped, b"state")
        >>> len(sealed) == len(b"state") + SEAL_OVERHEAD
        True
        >>> cipher.open(b"user-pseudonym", wrapped, sealed)
        b'state'
    """

    def __init__(
        self,
        master_key: bytes,
        *,
        key_version: int = 1,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        if len(master_key) != KEY_BYTES:
            raise ConfigurationError(f"the state master key must be {KEY_BYTES} bytes")
        if not 1 <= key_version <= 255:
            raise ValueError(f"key_version must be in 1..255, got {key_version}")
        if cache_size < 1:
            raise ValueError(f"cache_size must be >= 1, got {cache_size}")
        self._master = AESGCM(master_key)
        self._header = bytes([key_version])
        self._cache_size = cache_size
        # pseudonym -> (wrapped key it came from, AES-GCM of the unwrapped key)
        self._cache: OrderedDict[bytes, tuple[bytes, AESGCM]] = OrderedDict()

    def new_wrapped_key(self, pseudonym: bytes) -> bytes:
        """A fresh random data key for one user, wrapped under the master key.

        Store the result (:data:`WRAPPED_KEY_BYTES` long) in the key table; it is
        useless without the master key and opens only for this pseudonym. The
        new key is also cached, replacing any older key of the user.

        Args:
            pseudonym: the user's pseudonym, bound to the key as associated data.

        Returns:
            The wrapped key.
        """
        data_key = AESGCM.generate_key(bit_length=8 * KEY_BYTES)
        wrapped = self._wrap(pseudonym, data_key)
        self._remember(pseudonym, wrapped, AESGCM(data_key))
        return wrapped

    def seal(self, pseudonym: bytes, wrapped_key: bytes, plaintext: bytes) -> bytes:
        """Encrypt one state record of one user.

        Args:
            pseudonym: the user's pseudonym (associated data).
            wrapped_key: the user's wrapped data key from :meth:`new_wrapped_key`.
            plaintext: the serialized state.

        Returns:
            ``len(plaintext) + SEAL_OVERHEAD`` bytes, different on every call.

        Raises:
            StateDecryptionError: ``wrapped_key`` does not open for this
                pseudonym under this master key.
        """
        aead = self._data_key(pseudonym, wrapped_key)
        nonce = os.urandom(NONCE_BYTES)
        return _RECORD_HEADER + nonce + aead.encrypt(nonce, plaintext, _RECORD_HEADER + pseudonym)

    def open(self, pseudonym: bytes, wrapped_key: bytes, sealed: bytes) -> bytes:
        """Decrypt and authenticate one record made by :meth:`seal`.

        Args:
            pseudonym: the user's pseudonym the record was sealed for.
            wrapped_key: the user's wrapped data key.
            sealed: the sealed record.

        Returns:
            The plaintext.

        Raises:
            StateDecryptionError: wrong master key, wrong data key or user,
                tampered, truncated, or an unknown format version.
        """
        if len(sealed) < SEAL_OVERHEAD or sealed[0] != RECORD_VERSION:
            raise StateDecryptionError("not a sealed state record of a known format")
        aead = self._data_key(pseudonym, wrapped_key)
        try:
            return aead.decrypt(sealed[1:_BODY], sealed[_BODY:], _RECORD_HEADER + pseudonym)
        except InvalidTag:
            raise StateDecryptionError(
                "state record failed authentication (wrong key or user, or tampered)"
            ) from None

    def rewrap(self, pseudonym: bytes, wrapped_key: bytes, *, to: StateCipher) -> bytes:
        """The same data key, unwrapped here and wrapped under ``to``'s master key.

        Used to rotate the master key; the user's sealed records stay valid.

        Raises:
            StateDecryptionError: ``wrapped_key`` does not open here.
        """
        return to._wrap(pseudonym, self._unwrap(pseudonym, wrapped_key))

    def forget(self, pseudonym: bytes) -> None:
        """Drop the user's cached data key, if any (erasure; see the module docstring)."""
        self._cache.pop(pseudonym, None)

    def _wrap(self, pseudonym: bytes, data_key: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return (
            self._header + nonce + self._master.encrypt(nonce, data_key, self._header + pseudonym)
        )

    def _unwrap(self, pseudonym: bytes, wrapped_key: bytes) -> bytes:
        if len(wrapped_key) != WRAPPED_KEY_BYTES or wrapped_key[:1] != self._header:
            raise StateDecryptionError("wrapped key of an unknown format or master key version")
        try:
            return self._master.decrypt(
                wrapped_key[1:_BODY], wrapped_key[_BODY:], self._header + pseudonym
            )
        except InvalidTag:
            raise StateDecryptionError(
                "wrapped key failed authentication (wrong master key or user, or tampered)"
            ) from None

    def _data_key(self, pseudonym: bytes, wrapped_key: bytes) -> AESGCM:
        entry = self._cache.get(pseudonym)
        # Compare the wrapped key too: a user who was erased and came back has a new one.
        if entry is not None and entry[0] == wrapped_key:
            self._cache.move_to_end(pseudonym)
            return entry[1]
        aead = AESGCM(self._unwrap(pseudonym, wrapped_key))
        self._remember(pseudonym, wrapped_key, aead)
        return aead

    def _remember(self, pseudonym: bytes, wrapped_key: bytes, aead: AESGCM) -> None:
        self._cache[pseudonym] = (wrapped_key, aead)
        self._cache.move_to_end(pseudonym)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)


#: HKDF purpose of the key that seals the DLQ's copies of rejected records.
DLQ_PURPOSE = b"dead letters"


def derived_aead(master_key: bytes, purpose: bytes) -> AESGCM:
    """AES-GCM under a key derived from the master key for one ``purpose`` (HKDF-SHA256).

    Each purpose gets its own key, so a record sealed for one use never opens as another.

    Raises:
        ConfigurationError: the master key is not 32 bytes long.
    """
    if len(master_key) != KEY_BYTES:
        raise ConfigurationError(f"the state master key must be {KEY_BYTES} bytes")
    derive = HKDF(algorithm=SHA256(), length=KEY_BYTES, salt=None, info=b"intentstream " + purpose)
    return AESGCM(derive.derive(master_key))


class RecordSealer:
    """Seals whole records (key and value) under a key derived from the master key.

    For copies of input that must be kept but may hold raw ids, such as the
    dead-letter topic's copies of rejected events: a reader without the master
    key learns their sizes only. ``purpose`` separates the derived keys (HKDF-SHA256).

    Examples:
        >>> sealer = RecordSealer(bytes(32), purpose=b"dlq")
        >>> sealer.open(sealer.seal(b"u1", b'{"oops'))
        (b'u1', b'{"oops')
        >>> sealer.open(sealer.seal(None, None))
        (None, None)
    """

    def __init__(self, master_key: bytes, *, purpose: bytes) -> None:
        self._aead = derived_aead(master_key, purpose)
        self._aad = _RECORD_HEADER + purpose

    def seal(self, key: bytes | None, value: bytes | None) -> bytes:
        """One opaque blob holding both (``len(key) + len(value) + 34`` bytes)."""
        nonce = os.urandom(NONCE_BYTES)
        body = pack_record(key, value)
        return _RECORD_HEADER + nonce + self._aead.encrypt(nonce, body, self._aad)

    def open(self, sealed: bytes) -> tuple[bytes | None, bytes | None]:
        """The (key, value) sealed by :meth:`seal`.

        Raises:
            StateDecryptionError: wrong master key or purpose, tampered or truncated.
        """
        if len(sealed) < SEAL_OVERHEAD or sealed[0] != RECORD_VERSION:
            raise StateDecryptionError("not a sealed record of a known format")
        try:
            body = self._aead.decrypt(sealed[1:_BODY], sealed[_BODY:], self._aad)
        except InvalidTag:
            raise StateDecryptionError("sealed record failed authentication") from None
        return unpack_record(body)


def pack_record(key: bytes | None, value: bytes | None) -> bytes:
    """A record's key and value as one byte string (None kept apart from empty)."""
    flags = (key is not None) | (value is not None) << 1
    return bytes([flags]) + len(key or b"").to_bytes(4, "big") + (key or b"") + (value or b"")


def unpack_record(body: bytes) -> tuple[bytes | None, bytes | None]:
    """Inverse of :func:`pack_record`."""
    flags, size = body[0], int.from_bytes(body[1:5], "big")
    key, value = body[5 : 5 + size], body[5 + size :]
    return (key if flags & 1 else None), (value if flags & 2 else None)


def load_master_key(settings: Settings, *, create: bool = False) -> bytes:
    """The state master key from the settings or the key file.

    Args:
        settings: ``master_key`` (64 hex digits) wins; else ``master_key_file`` is read.
        create: make a new random key file (mode 0600) when there is none; the
            demo uses this so a first run works without set-up.

    Returns:
        The 32-byte AES-256 master key.

    Raises:
        ConfigurationError: no key is configured and ``create`` is false, or the
            key is not 64 hex digits.

    Examples:
        >>> len(load_master_key(Settings(master_key="00" * 32)))
        32
    """
    text = load_key(
        settings.master_key,
        settings.master_key_file,
        create=create,
        env_name="INTENTSTREAM_MASTER_KEY",
    )
    try:
        key = bytes.fromhex(text.decode("ascii"))
    except ValueError:  # also UnicodeDecodeError; the message must not echo the key
        key = b""
    if len(key) != KEY_BYTES:
        raise ConfigurationError(
            f"the state master key must be {2 * KEY_BYTES} hex digits ({KEY_BYTES} bytes)"
        )
    return key
