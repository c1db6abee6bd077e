"""Master-key rotation: every user's data key re-wrapped under a new master key, no state lost.

Only the ledgers in the ``user_keys`` changelog change (each is re-sealed, its data
key re-wrapped); the sealed states do not, since their data keys stay the same.
The workers must be stopped, so no ledger changes while it runs: a worker still
running would write ledgers under the old key. It is safe to run again after an
interruption: ledgers already under the new key are kept as they are. Then the
deployment's key check value is replaced, so workers still holding the old key
refuse to start. Last, the model version being served is announced again, signed
under the new key: workers refuse announcements signed under the old one.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer

from online_learning.signing import AnnouncementSigner
from streams.errors import ConfigurationError, StateDecryptionError
from streams.kafka.admin import admin_client, changelog_topic
from streams.kafka.announce import announce, store_of
from streams.kafka.feed import read_to_end
from streams.kafka.key_check import check_values, read_check, verify_keys, write_check
from streams.kafka.security import client_security
from streams.kafka.tables import KEY_TABLE
from streams.pipeline.crypto import StateCipher
from streams.pipeline.ledger import LedgerSealer
from streams.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RewrapReport:
    """What a rotation did: ledgers re-wrapped, already under the new key, unreadable,
    and the model version announced again (None: none is current)."""

    rewrapped: int
    already: int
    unreadable: int
    reannounced: str | None = None


def rewrap(settings: Settings, *, old: bytes, new: bytes, pseudonym: bytes) -> RewrapReport:
    """Re-wrap every stored ledger from master key ``old`` to ``new``.

    Raises:
        ConfigurationError: workers of the app are running, or ``old`` is not the
            deployment's master key.
        BrokerError: the current model version's new announcement was not acknowledged
            (run it again: it is safe).
    """
    _refuse_running_workers(settings)
    new_values = check_values(master=new, pseudonym=pseudonym)
    if read_check(settings) != new_values:  # else a run interrupted after its last step
        verify_keys(settings, master=old, pseudonym=pseudonym)
    topic = changelog_topic(settings, KEY_TABLE)
    changelog = read_to_end(settings, topic)
    latest = {(r.partition, r.key): r.value for r in changelog}
    from_ledgers, to_ledgers = LedgerSealer(old), LedgerSealer(new)
    from_cipher, to_cipher = StateCipher(old), StateCipher(new)
    records: list[tuple[int, bytes, bytes]] = []
    already = unreadable = 0
    for (partition, user), sealed in latest.items():
        if sealed is None:
            continue
        try:
            ledger = from_ledgers.open(user, sealed)
        except StateDecryptionError:
            try:
                to_ledgers.open(user, sealed)
                already += 1
            except StateDecryptionError:
                unreadable += 1
            continue
        if ledger.wrapped_key is not None:
            ledger.wrapped_key = from_cipher.rewrap(user, ledger.wrapped_key, to=to_cipher)
        records.append((partition, user, to_ledgers.seal(user, ledger)))
    asyncio.run(_produce(settings, topic, records))
    write_check(settings, new_values)
    store = store_of(settings)
    current = store.current()
    if current is not None:
        announce(settings, store.announcement(current), signer=AnnouncementSigner(new))
    return RewrapReport(len(records), already, unreadable, current)


def _refuse_running_workers(settings: Settings) -> None:
    with admin_client(settings) as admin:
        [group] = admin.describe_consumer_groups([settings.app_id])
    if group.members:
        raise ConfigurationError(
            f"{len(group.members)} worker(s) of app {settings.app_id!r} are running: stop them "
            "before rotating the master key"
        )


async def _produce(settings: Settings, topic: str, records: list[tuple[int, bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap, acks="all", **client_security(settings)
    )
    await producer.start()
    try:
        sent = [
            await producer.send(topic, value, key=user, partition=partition)
            for partition, user, value in records
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
