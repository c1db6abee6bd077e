"""Creates the topics of DESIGN.md on whichever cluster the settings point at."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from streams.errors import BrokerError
from streams.kafka.key_check import key_check_topic
from streams.kafka.security import client_security, describe
from streams.kafka.tables import KEY_CHANGELOG_CONFIGS, KEY_TABLE, RELEASES_TABLE, USER_TABLE
from streams.settings import Settings

log = logging.getLogger(__name__)

#: Dead letters keep the original bytes, so allow records larger than the input limit.
DLQ_MAX_MESSAGE_BYTES = 8 * 1024 * 1024
#: A changelog keeps each user's latest state only.
CHANGELOG_CONFIGS = {"cleanup.policy": "compact"}


def topic_specs(settings: Settings) -> list[NewTopic]:
    """The topics intentstream reads and writes, with partitions, replicas and configs.

    The raw-id topics and the DLQ keep records for ``raw_topic_retention_seconds``.
    On Apache Kafka the two input topics are stamped by the broker (LogAppendTime):
    an erasure applies to the user's events stamped at or before it, so the order
    must come from one clock that no producer sets.
    """
    parts, copies = settings.partitions, settings.replication_factor
    raw = {"retention.ms": str(round(settings.raw_topic_retention_seconds * 1000))}
    inputs = raw | (
        {"message.timestamp.type": "LogAppendTime"} if settings.broker_kind == "kafka" else {}
    )
    return [
        NewTopic(settings.events_topic, parts, copies, topic_configs=inputs),
        NewTopic(settings.recommendations_topic, parts, copies, topic_configs=raw),
        NewTopic(
            settings.dlq_topic,
            parts,
            copies,
            topic_configs={"max.message.bytes": str(DLQ_MAX_MESSAGE_BYTES), **raw},
        ),
        NewTopic(settings.items_topic, parts, copies, topic_configs={"cleanup.policy": "compact"}),
        NewTopic(settings.privacy_requests_topic, parts, copies, topic_configs=inputs),
        NewTopic(settings.privacy_audit_topic, 1, copies, topic_configs=raw),
        NewTopic(settings.models_topic, 1, copies),
        # The tables' changelogs, named as Faust names them. Created here rather than
        # by Faust: on a fresh broker Faust could start recovering a changelog whose
        # metadata had not arrived yet ("Ignoring missing topic") and never finish.
        NewTopic(
            changelog_topic(settings, USER_TABLE), parts, copies, topic_configs=CHANGELOG_CONFIGS
        ),
        NewTopic(
            changelog_topic(settings, KEY_TABLE),
            parts,
            copies,
            topic_configs={**CHANGELOG_CONFIGS, **KEY_CHANGELOG_CONFIGS},
        ),
        NewTopic(key_check_topic(settings), 1, copies, topic_configs=CHANGELOG_CONFIGS),
        NewTopic(
            changelog_topic(settings, RELEASES_TABLE),
            parts,
            copies,
            topic_configs=CHANGELOG_CONFIGS,
        ),
    ]


def changelog_topic(settings: Settings, table: str) -> str:
    """The changelog topic Faust keeps for ``table`` in this app."""
    return f"{settings.app_id}-{table}-changelog"


@contextlib.contextmanager
def admin_client(settings: Settings) -> Iterator[KafkaAdminClient]:
    """An admin client of the cluster, closed after use.

    Raises:
        BrokerError: It could not connect, the certificate files could not be read,
            or the TLS or SASL handshake failed. kafka-python reports a refused login
            (a wrong password) as a misleading version error, so the message says how
            it connected; kafka-python's log names the cause.
    """
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=settings.bootstrap,
            client_id="intentstream-admin",
            **client_security(settings),
        )
    except (KafkaError, OSError) as exc:  # ssl.SSLError is an OSError
        raise BrokerError(
            f"cannot connect to {describe(settings)} ({type(exc).__name__}: {exc}); check the "
            "address, security_protocol and the ssl_*/sasl_* settings"
        ) from exc
    try:
        yield admin
    finally:
        admin.close()


def ensure_topics(settings: Settings) -> list[str]:
    """Create the missing topics; returns the names created (existing ones are kept).

    Raises:
        BrokerError: The cluster could not be reached or refused the login.
    """
    created = []
    with admin_client(settings) as admin:
        # Create-and-ignore-exists rather than list first: kafka-python 2.3's
        # list_topics cannot parse Tansu's metadata (authorized operations).
        for spec in topic_specs(settings):
            try:
                admin.create_topics([spec])
            except TopicAlreadyExistsError:
                continue
            created.append(spec.name)
    if created:
        log.info("created topics %s on %s", created, settings.bootstrap)
    return created


def wait_for_group_coordinator(settings: Settings, *, timeout: float = 60.0) -> None:
    """Block until Apache Kafka can name the coordinator of the worker's consumer group.

    A fresh broker creates ``__consumer_offsets`` on the first group lookup; a
    worker that joins before that sees GroupCoordinatorNotAvailable, rebalances
    right after its first batch, and Faust's recovery can then stall its agent
    for good (found by the benchmarks on fresh brokers). Waiting here first
    avoids that start-up rebalance. Tansu needs no wait.

    Raises:
        BrokerError: no coordinator within ``timeout`` seconds.
    """
    if settings.broker_kind != "kafka":
        return
    deadline = time.monotonic() + timeout
    with admin_client(settings) as admin:
        while True:
            try:
                # FindCoordinator alone. The public describe_consumer_groups sends it
                # too, but kafka-python 2.3.3 cannot parse Kafka 4's DescribeGroups.
                admin._find_coordinator_ids([settings.app_id])
                return
            except KafkaError as exc:
                if time.monotonic() > deadline:
                    raise BrokerError(f"no group coordinator after {timeout:.0f} s: {exc}") from exc
                time.sleep(0.5)
