"""Creates the topics of DESIGN.md on whichever cluster the settings point at."""

from __future__ import annotations

import logging

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from streams.settings import Settings

log = logging.getLogger(__name__)

#: Dead letters keep the original bytes, so allow records larger than the input limit.
DLQ_MAX_MESSAGE_BYTES = 8 * 1024 * 1024


def topic_specs(settings: Settings) -> list[NewTopic]:
    """The topics intentstream reads and writes, with partitions and configs."""
    parts = settings.partitions
    return [
        NewTopic(settings.events_topic, parts, 1),
        NewTopic(settings.recommendations_topic, parts, 1),
        NewTopic(
            settings.dlq_topic,
            parts,
            1,
            topic_configs={"max.message.bytes": str(DLQ_MAX_MESSAGE_BYTES)},
        ),
        NewTopic(settings.items_topic, parts, 1, topic_configs={"cleanup.policy": "compact"}),
        NewTopic(settings.privacy_requests_topic, parts, 1),
        NewTopic(settings.privacy_audit_topic, 1, 1),
        NewTopic(settings.models_topic, 1, 1),
    ]


def ensure_topics(settings: Settings) -> list[str]:
    """Create the missing topics; returns the names created (existing ones are kept)."""
    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap, client_id="intentstream-admin")
    created = []
    try:
        # Create-and-ignore-exists rather than list first: kafka-python 2.3's
        # list_topics cannot parse Tansu's metadata (authorized operations).
        for spec in topic_specs(settings):
            try:
                admin.create_topics([spec])
            except TopicAlreadyExistsError:
                continue
            created.append(spec.name)
    finally:
        admin.close()
    if created:
        log.info("created topics %s on %s", created, settings.bootstrap)
    return created
