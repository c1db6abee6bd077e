"""The users one batch touches: sealed state in, plaintext features in between, sealed changes out.

Per-user state is stored only sealed (AES-GCM under the user's own data key,
:mod:`streams.pipeline.crypto`), in the ``user_state`` table; the wrapped data keys
live in their own ``user_keys`` table. A batch opens each user's state once,
works on plaintext :class:`~streams.pipeline.state.UserState`, and seals each
changed user once at the end, making a data key for users who have none.

Erasure deletes the state and destroys the key (a tombstone in each table), so
every sealed copy left in changelog segments becomes unreadable. A state whose
key is gone, or that fails to open, reads as a new user.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field

from streams.errors import StateDecryptionError
from streams.pipeline.crypto import StateCipher
from streams.pipeline.state import UserState

log = logging.getLogger(__name__)

#: A table lookup: pseudonym bytes -> stored bytes, or None.
TableReader = Callable[[bytes], bytes | None]

#: pseudonym -> (partition, bytes to store, or None for a tombstone).
TableChanges = dict[bytes, tuple[int, bytes | None]]


@dataclass(slots=True)
class StateChanges:
    """What a batch writes: sealed states and wrapped keys (None = delete)."""

    states: TableChanges = field(default_factory=dict)
    keys: TableChanges = field(default_factory=dict)

    def apply(
        self, states: MutableMapping[bytes, bytes], keys: MutableMapping[bytes, bytes]
    ) -> None:
        """Write the changes into the two tables' stores (a tombstone deletes)."""
        for store, changes in ((states, self.states), (keys, self.keys)):
            for user, (_, value) in changes.items():
                if value is None:
                    store.pop(user, None)
                else:
                    store[user] = value


class WorkingSet:
    """One batch's working set of users, read through and sealed on :meth:`changes`."""

    def __init__(
        self, cipher: StateCipher, *, read_state: TableReader, read_key: TableReader
    ) -> None:
        self._cipher = cipher
        self._read_state = read_state
        self._read_key = read_key
        self._features: dict[bytes, UserState] = {}
        self._keys: dict[bytes, bytes | None] = {}
        self._dirty: dict[bytes, int] = {}
        self._erased: dict[bytes, int] = {}
        self.unreadable = 0

    def get(self, user: bytes) -> UserState:
        """The user's features, opened from the table on first use in the batch."""
        features = self._features.get(user)
        if features is None:
            features = self._features[user] = UserState.from_bytes(self._open(user))
        return features

    def changed(self, user: bytes, partition: int) -> None:
        """Mark the user's features for writing, to ``partition`` of the changelogs."""
        self._dirty[user] = partition

    def erase(self, user: bytes, partition: int) -> bool:
        """Delete the user's state and destroy their key; True when there was any."""
        existed = (
            user in self._dirty or self._key(user) is not None or self._read_state(user) is not None
        )
        self._features[user] = UserState()
        self._keys[user] = None
        self._dirty.pop(user, None)
        self._erased[user] = partition
        self._cipher.forget(user)
        return existed

    def changes(self) -> StateChanges:
        """Seal every changed user (new keys where needed) and list the deletions."""
        out = StateChanges()
        for user, partition in self._erased.items():
            out.states[user] = (partition, None)
            out.keys[user] = (partition, None)
        for user, partition in self._dirty.items():
            wrapped = self._key(user)
            if wrapped is None:
                wrapped = self._keys[user] = self._cipher.new_wrapped_key(user)
                out.keys[user] = (partition, wrapped)
            plaintext = self._features[user].to_bytes()
            out.states[user] = (partition, self._cipher.seal(user, wrapped, plaintext))
        return out

    def _key(self, user: bytes) -> bytes | None:
        if user not in self._keys:
            self._keys[user] = self._read_key(user)
        return self._keys[user]

    def _open(self, user: bytes) -> bytes | None:
        sealed = self._read_state(user)
        wrapped = self._key(user)
        if sealed is None or wrapped is None:
            return None
        try:
            return self._cipher.open(user, wrapped, sealed)
        except StateDecryptionError:
            # Tampered, or sealed under another master key: the user restarts under a new key.
            self.unreadable += 1
            self._keys[user] = None
            log.warning("a user state failed to open; starting that user afresh under a new key")
            return None
