"""Creates the topics of DESIGN.md on whichever cluster the settings point at.

``streams.kafka.topic_check`` checks existing ones against what the product needs.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from streams.errors import BrokerError
from streams.kafka.key_check import key_check_topic
from streams.kafka.security import client_security, describe
from streams.kafka.tables import KEY_CHANGELOG_CONFIGS, KEY_TABLE, RELEASES_TABLE, USER_TABLE
from streams.settings import Settings

log = logging.getLogger(__name__)

#: Dead letters keep the original bytes, so allow records larger than the input limit.
DLQ_MAX_MESSAGE_BYTES = 8 * 1024 * 1024
#: Model announcements are kept for good: a worker that starts reads them all to find the
#: version to serve, and with a broker's default retention (7 days) one started after a
#: week without a new version would serve INTENTSTREAM_MODEL_PATH instead. They are few
#: and small (one per published version) and hold no user data.
MODELS_CONFIGS = {"retention.ms": "-1"}
#: A changelog keeps each user's latest state only.
CHANGELOG_CONFIGS = {"cleanup.policy": "compact"}
#: Spend records are each worker's deltas, read back for pacing and the day's report: a
#: starting worker reads the current and the previous day, so three days cover a day's
#: report with room to spare. Segments roll daily so the retention bites on time.
ADS_SPEND_CONFIGS = {"retention.ms": str(3 * 86_400_000), "segment.ms": str(86_400_000)}
#: Configs that privacy depends on, set on topics that existed before (auto-created
#: by a producer's first write, or made by hand) as well as on new ones.
ENFORCED_CONFIGS = ("message.timestamp.type", "retention.ms", "segment.ms")
#: DescribeConfigs' source of a config set on the topic itself.
_TOPIC_CONFIG_SOURCE = 1


def topic_specs(settings: Settings) -> list[NewTopic]:
    """The topics intentstream reads and writes, with partitions, replicas and configs.

    The raw-id topics and the DLQ keep records for ``raw_topic_retention_seconds``, and
    roll segments as often (Kafka deletes whole segments: a record stays at most
    twice that, which ``state_ttl_seconds`` covers).
    On Apache Kafka the two input topics are stamped by the broker (LogAppendTime):
    an erasure applies to the user's events stamped at or before it, so the order
    must come from one clock that no producer sets.
    """
    parts, copies = settings.partitions, settings.replication_factor
    retention = str(round(settings.raw_topic_retention_seconds * 1000))
    raw = {"retention.ms": retention, "segment.ms": retention}
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
        NewTopic(settings.models_topic, 1, copies, topic_configs=MODELS_CONFIGS),
        NewTopic(settings.ads_campaigns_topic, parts, copies, topic_configs=CHANGELOG_CONFIGS),
        NewTopic(settings.ads_spend_topic, parts, copies, topic_configs=ADS_SPEND_CONFIGS),
        NewTopic(settings.ads_reports_topic, parts, copies, topic_configs=CHANGELOG_CONFIGS),
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
    """Create the missing topics; returns the names created.

    Existing topics are kept, but on Apache Kafka their ``ENFORCED_CONFIGS`` are set
    as for a new one: a topic a producer auto-created would otherwise keep
    CreateTime (the order of erasures would come from the producers' clocks) and
    the broker's default retention.

    Raises:
        BrokerError: The cluster could not be reached, refused the login, or refused
            to change an existing topic's configs.
    """
    created = []
    with admin_client(settings) as admin:
        # Create-and-ignore-exists rather than list first: kafka-python 2.3's
        # list_topics cannot parse Tansu's metadata (authorized operations).
        for spec in topic_specs(settings):
            try:
                admin.create_topics([spec])
            except TopicAlreadyExistsError:
                if settings.broker_kind == "kafka":
                    _enforce_configs(admin, spec)
                continue
            created.append(spec.name)
    if created:
        log.info("created topics %s on %s", created, settings.bootstrap)
    return created


def _enforce_configs(admin: KafkaAdminClient, spec: NewTopic) -> None:
    """Give an existing topic the ``ENFORCED_CONFIGS`` of its spec, keeping its other configs.

    AlterConfigs replaces a topic's whole set of configs, so the ones set on the
    topic before are sent again beside the enforced ones.
    """
    wanted = {k: v for k, v in spec.topic_configs.items() if k in ENFORCED_CONFIGS}
    if not wanted:
        return
    resource = ConfigResource(ConfigResourceType.TOPIC, spec.name)
    [response] = admin.describe_configs([resource])
    [(code, message, _, _, entries)] = response.resources
    if code:
        raise BrokerError(f"cannot read the configs of topic {spec.name}: {message or code}")
    current = {entry[0]: (entry[1], entry[3]) for entry in entries}
    before = {k: current.get(k, (None, 0))[0] for k in wanted}
    if before == wanted:
        return
    own = {k: value for k, (value, source) in current.items() if source == _TOPIC_CONFIG_SOURCE}
    altered = admin.alter_configs(
        [ConfigResource(ConfigResourceType.TOPIC, spec.name, configs=own | wanted)]
    )
    [(code, message, *_)] = altered.resources
    if code:
        raise BrokerError(
            f"topic {spec.name} exists with other configs than {wanted} and could not be "
            f"changed ({for_code(code).__name__}: {message}); set them with kafka-configs"
        )
    log.warning("topic %s existed with %s; set %s", spec.name, before, wanted)


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
