"""check_topics on Apache Kafka: topics as created pass; changed ones are reported."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import pytest
from kafka.admin import ConfigResource, ConfigResourceType, NewPartitions

from streams.kafka.admin import admin_client, ensure_topics, topic_specs
from streams.kafka.topic_check import check_topics
from streams.ops.commands.processes import cmd_topics
from streams.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.kafka]


def test_check_topics_reports_what_differs_from_what_the_product_needs(
    kafka_bootstrap: str,
    make_settings: Callable[..., Settings],
    new_topic_name: Callable[[str], str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = make_settings(kafka_bootstrap, "kafka", partitions=2)
    assert check_topics(settings) == []

    # A shop's operator compacts the recommendations and adds a partition to the
    # erasure requests; the dead-letter topic of these settings was never created.
    [recommendations] = [
        s for s in topic_specs(settings) if s.name == settings.recommendations_topic
    ]
    with admin_client(settings) as admin:
        admin.alter_configs(
            [
                ConfigResource(
                    ConfigResourceType.TOPIC,
                    settings.recommendations_topic,
                    configs={**recommendations.topic_configs, "cleanup.policy": "compact"},
                )
            ]
        )
        admin.create_partitions({settings.privacy_requests_topic: NewPartitions(3)})
    settings = settings.model_copy(update={"dlq_topic": new_topic_name("dlq")})

    found = {
        (d.topic, d.setting, d.found, d.needed, d.fixed_by_topics) for d in check_topics(settings)
    }
    assert found == {
        (settings.recommendations_topic, "cleanup.policy", "compact", "delete", False),
        (settings.privacy_requests_topic, "partitions", "3", "2", False),
        (settings.dlq_topic, "topic", "missing", "to exist", True),
    }
    # `intentstream topics` creates what is missing; the rest is the operator's.
    ensure_topics(settings)
    assert {d.setting for d in check_topics(settings)} == {"cleanup.policy", "partitions"}
    # `intentstream topics --check` says the same, changes nothing and exits 1.
    capsys.readouterr()
    assert cmd_topics(argparse.Namespace(check=True), settings) == 1
    shown = capsys.readouterr().out
    assert f"{settings.recommendations_topic}: cleanup.policy is compact, needs delete" in shown
    assert f"{settings.privacy_requests_topic}: partitions is 3, needs 2" in shown
    assert {d.setting for d in check_topics(settings)} == {"cleanup.policy", "partitions"}
