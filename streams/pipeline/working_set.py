"""The users one batch touches: sealed state in, plaintext features in between, sealed changes out.

Per-user state is stored only sealed (AES-GCM under the user's own data key,
:mod:`streams.pipeline.crypto`), in the ``user_state`` table; the wrapped data key
lives in the user's ledger (:mod:`streams.pipeline.ledger`) in the ``user_keys``
table. A batch opens each user's ledger and state once, works on plaintext
:class:`~streams.pipeline.state.UserState`, and seals each changed user once at
the end, making a data key for users who have none.

Erasure deletes the state (a tombstone) and rewrites the ledger without the key,
so every sealed copy left in changelog segments becomes unreadable, while the
ledger keeps the erasure's timestamp and the user's DP spend. A state whose key
is gone, or that fails to open, reads as a new user with the ledger's spend.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field

from streams.errors import StateDecryptionError
from streams.pipeline.crypto import StateCipher
from streams.pipeline.ledger import LedgerSealer, UserLedger
from streams.pipeline.state import UserState

log = logging.getLogger(__name__)

#: A table lookup: pseudonym bytes -> stored bytes, or None.
TableReader = Callable[[bytes], bytes | None]

#: pseudonym -> (partition, bytes to store, or None for a tombstone).
TableChanges = dict[bytes, tuple[int, bytes | None]]

#: Brings a state opened (or started afresh) up to its ledger's DP spend at event time
#: ``now``; the ledger is None when it failed to open (``SharedCounts.restore``).
Restore = Callable[[UserState, UserLedger | None, float], None]

#: A sealed dead letter's first byte when sealed under its user's data key.
USER_SEALED_DEAD_LETTER = 2


@dataclass(slots=True)
class StateChanges:
    """What a batch writes: sealed states and sealed ledgers (None = delete)."""

    states: TableChanges = field(default_factory=dict)
    keys: TableChanges = field(default_factory=dict)
    #: Partitions where a user was erased: their key changelog segment should roll soon.
    erased_partitions: set[int] = field(default_factory=set)

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
    """One batch's working set of users, read through and sealed on :meth:`changes`.

    Args:
        cipher: seals states under each user's data key.
        ledgers: seals the users' ledgers.
        read_state: the ``user_state`` lookup.
        read_key: the ``user_keys`` lookup (sealed ledgers).
        restore: applies a ledger's DP spend to a state as it is opened.
        seen_every: seconds of activity after which ``last_seen`` is rewritten; it
            bounds how often an active user's ledger is written for that alone.
    """

    def __init__(
        self,
        cipher: StateCipher,
        ledgers: LedgerSealer,
        *,
        read_state: TableReader,
        read_key: TableReader,
        restore: Restore,
        seen_every: float,
    ) -> None:
        self._cipher = cipher
        self._ledger_sealer = ledgers
        self._read_state = read_state
        self._read_key = read_key
        self._restore = restore
        self._seen_every = seen_every
        self._features: dict[bytes, UserState] = {}
        self._ledgers: dict[bytes, UserLedger] = {}
        self._ledgers_changed: dict[bytes, int] = {}
        self._unreadable_ledgers: set[bytes] = set()
        self._dirty: dict[bytes, int] = {}
        self._erased: dict[bytes, int] = {}
        self.unreadable = 0

    def foreign(self, user: bytes, partition: int) -> int | None:
        """The user's own partition when a record of theirs arrived on another; else None.

        The first record that writes a user's ledger fixes their partition (ledger.py).
        """
        home = self._ledger(user).partition
        return home if 0 <= home != partition else None

    def erased_before_ms(self, user: bytes) -> int:
        """Broker time (ms) at or before which the user's records were erased; -1: never."""
        return self._ledger(user).erased_before_ms

    def get(self, user: bytes, now: float) -> UserState:
        """The user's features as of event time ``now``, opened on first use in the batch."""
        features = self._features.get(user)
        if features is None:
            features = self._features[user] = UserState.from_bytes(self._open(user))
            ledger = None if user in self._unreadable_ledgers else self._ledger(user)
            self._restore(features, ledger, now)
        return features

    def changed(self, user: bytes, partition: int, *, seen: float) -> None:
        """Mark the user's features for writing, to ``partition``; ``seen``: record time."""
        self._dirty[user] = partition
        ledger = self._ledger(user)
        if seen - ledger.last_seen >= self._seen_every:
            ledger.last_seen = int(seen)
            self._ledgers_changed[user] = partition

    def erase(self, user: bytes, partition: int, *, requested_ms: int) -> bool | None:
        """Apply an erase request stamped ``requested_ms`` by the broker.

        Deletes the state and destroys the key; the ledger keeps the request's time
        and the user's DP spend.

        Returns:
            Whether there was anything to erase, or None when a request at least as
            recent was applied before (a redelivery: nothing changes).
        """
        ledger = self._ledger(user)
        if requested_ms <= ledger.erased_before_ms:
            return None
        existed = (
            user in self._dirty
            or ledger.wrapped_key is not None
            or self._read_state(user) is not None
        )
        loaded = self._features.get(user)
        if loaded is not None:  # this batch's own spend, not yet in the ledger
            self._note_spend(ledger, loaded)
        ledger.wrapped_key = None
        ledger.erased_before_ms = requested_ms
        ledger.last_seen = max(ledger.last_seen, requested_ms // 1000)
        self._unreadable_ledgers.discard(user)
        self._features.pop(user, None)
        self._dirty.pop(user, None)
        self._erased[user] = partition
        self._ledgers_changed[user] = partition
        self._cipher.forget(user)
        return existed

    def seal_dead_letter(self, user: bytes, partition: int, body: bytes) -> bytes:
        """``body`` sealed under the user's data key (made if needed): erasure shreds it."""
        ledger = self._ledger(user)
        if ledger.wrapped_key is None:
            ledger.wrapped_key = self._cipher.new_wrapped_key(user)
            self._ledgers_changed[user] = partition
        return bytes([USER_SEALED_DEAD_LETTER]) + self._cipher.seal(user, ledger.wrapped_key, body)

    def changes(self) -> StateChanges:
        """Seal every changed user (new keys where needed) and list the deletions."""
        out = StateChanges()
        for user, partition in self._erased.items():
            out.states[user] = (partition, None)
            out.erased_partitions.add(partition)
        for user, partition in self._dirty.items():
            ledger = self._ledger(user)
            if ledger.wrapped_key is None:
                ledger.wrapped_key = self._cipher.new_wrapped_key(user)
                self._ledgers_changed[user] = partition
            features = self._features[user]
            if self._note_spend(ledger, features):
                self._ledgers_changed[user] = partition
            sealed = self._cipher.seal(user, ledger.wrapped_key, features.to_bytes())
            out.states[user] = (partition, sealed)
        seal = self._ledger_sealer.seal
        for user, partition in self._ledgers_changed.items():
            ledger = self._ledgers[user]
            if ledger.partition < 0:
                ledger.partition = partition
            out.keys[user] = (partition, seal(user, ledger))
        return out

    @staticmethod
    def _note_spend(ledger: UserLedger, state: UserState) -> bool:
        """Copy the state's budget into the ledger; True when it changed."""
        window, spent = state.privacy_budget
        if (float(window), int(spent)) == (ledger.window_start, ledger.spent_units):
            return False
        ledger.window_start, ledger.spent_units = float(window), int(spent)
        return True

    def _ledger(self, user: bytes) -> UserLedger:
        ledger = self._ledgers.get(user)
        if ledger is None:
            sealed = self._read_key(user)
            ledger = UserLedger()
            if sealed is not None:
                try:
                    ledger = self._ledger_sealer.open(user, sealed)
                except StateDecryptionError:
                    # Tampered: the user restarts, their spend taken as exhausted.
                    self.unreadable += 1
                    self._unreadable_ledgers.add(user)
                    log.warning("a user ledger failed to open; that user restarts, budget spent")
            self._ledgers[user] = ledger
        return ledger

    def _open(self, user: bytes) -> bytes | None:
        sealed = self._read_state(user)
        ledger = self._ledger(user)
        if sealed is None or ledger.wrapped_key is None:
            return None
        try:
            return self._cipher.open(user, ledger.wrapped_key, sealed)
        except StateDecryptionError:
            # Tampered: the user restarts under a new key, with the ledger's spend.
            self.unreadable += 1
            ledger.wrapped_key = None
            log.warning("a user state failed to open; starting that user afresh under a new key")
            return None
