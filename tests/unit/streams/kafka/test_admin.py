"""What the topics need, and how existing ones are compared with it (no broker)."""

from __future__ import annotations

import pytest

from streams.kafka.admin import changelog_topic
from streams.kafka.key_check import key_check_topic
from streams.kafka.tables import KEY_TABLE, USER_TABLE
from streams.kafka.topic_check import (
    CO_PARTITIONED,
    SINGLE_PARTITION,
    TopicDifference,
    TopicNeed,
    TopicState,
    compare_topics,
    topic_needs,
)
from streams.settings import BrokerKind, Settings


def _settings(kind: BrokerKind = "kafka") -> Settings:
    return Settings(broker_kind=kind, partitions=8, replication_factor=3)


def _as_created(needs: list[TopicNeed]) -> dict[str, TopicState]:
    """The topics as ``intentstream topics`` creates them, with a broker's other defaults."""
    defaults = {
        "cleanup.policy": "delete",
        "retention.ms": "604800000",
        "compression.type": "producer",
    }
    return {
        need.name: TopicState(need.partitions or 3, need.replication, defaults | dict(need.configs))
        for need in needs
    }


def _changed(
    found: dict[str, TopicState],
    name: str,
    *,
    partitions: int | None = None,
    replication: int | None = None,
    **configs: str,
) -> dict[str, TopicState]:
    state = found[name]
    return found | {
        name: TopicState(
            partitions or state.partitions,
            replication or state.replication,
            {**state.configs, **{k.replace("_", "."): v for k, v in configs.items()}},
        )
    }


def test_topics_as_created_differ_in_nothing() -> None:
    needs = topic_needs(_settings())
    assert compare_topics(needs, _as_created(needs)) == []


def test_inputs_and_changelogs_need_the_partitions_and_announcements_one() -> None:
    settings = _settings()
    parts = {need.name: need.partitions for need in topic_needs(settings)}
    for name in (
        settings.events_topic,
        settings.privacy_requests_topic,
        changelog_topic(settings, USER_TABLE),
        changelog_topic(settings, KEY_TABLE),
    ):
        assert parts[name] == 8, name
    assert parts[settings.models_topic] == parts[key_check_topic(settings)] == 1
    # Any number will do where nothing is keyed to a partition's owner.
    assert parts[settings.recommendations_topic] is None
    assert parts[settings.dlq_topic] is None


def test_raw_id_topics_must_expire_and_tables_be_compacted() -> None:
    settings = _settings()
    configs = {need.name: need.configs for need in topic_needs(settings)}
    for name in (settings.events_topic, settings.recommendations_topic, settings.dlq_topic):
        assert configs[name]["cleanup.policy"] == "delete"
        assert configs[name]["retention.ms"] == "604800000"
    assert configs[settings.events_topic]["message.timestamp.type"] == "LogAppendTime"
    assert configs[changelog_topic(settings, USER_TABLE)]["cleanup.policy"] == "compact"
    assert configs[settings.items_topic]["cleanup.policy"] == "compact"


def test_too_few_partitions_on_the_events_are_reported_for_the_operator_to_fix() -> None:
    settings = _settings()
    needs = topic_needs(settings)
    found = _changed(_as_created(needs), settings.events_topic, partitions=4)
    [difference] = compare_topics(needs, found)
    assert difference == TopicDifference(
        settings.events_topic, "partitions", "8", "4", CO_PARTITIONED, fixed_by_topics=False
    )
    assert str(difference) == f"{settings.events_topic}: partitions is 4, needs 8"


def test_a_second_partition_of_the_announcements() -> None:
    settings = _settings()
    needs = topic_needs(settings)
    [difference] = compare_topics(
        needs, _changed(_as_created(needs), settings.models_topic, partitions=2)
    )
    assert (difference.setting, difference.why) == ("partitions", SINGLE_PARTITION)


def test_a_compacted_raw_id_topic_and_a_deleted_changelog() -> None:
    settings = _settings()
    needs = topic_needs(settings)
    found = _changed(_as_created(needs), settings.recommendations_topic, cleanup_policy="compact")
    found = _changed(found, changelog_topic(settings, USER_TABLE), cleanup_policy="delete")
    differences = {(d.topic, d.setting, d.found, d.needed) for d in compare_topics(needs, found)}
    assert differences == {
        (settings.recommendations_topic, "cleanup.policy", "compact", "delete"),
        (changelog_topic(settings, USER_TABLE), "cleanup.policy", "delete", "compact"),
    }


@pytest.mark.parametrize(("kind", "fixed"), [("kafka", True), ("tansu", False)])
def test_a_longer_retention_is_one_intentstream_topics_sets_on_kafka(
    kind: BrokerKind, fixed: bool
) -> None:
    settings = _settings(kind)
    needs = topic_needs(settings)
    found = _changed(_as_created(needs), settings.events_topic, retention_ms="-1")
    [difference] = compare_topics(needs, found)
    assert (difference.setting, difference.found) == ("retention.ms", "-1")
    assert difference.fixed_by_topics is fixed


def test_fewer_replicas_and_an_unset_config() -> None:
    settings = _settings()
    needs = topic_needs(settings)
    keys = changelog_topic(settings, KEY_TABLE)
    found = _changed(_as_created(needs), settings.dlq_topic, replication=1)
    state = found[keys]
    unset = {k: v for k, v in state.configs.items() if k != "min.compaction.lag.ms"}
    found[keys] = TopicState(state.partitions, state.replication, unset)
    differences = {(d.topic, d.setting, d.found) for d in compare_topics(needs, found)}
    assert differences == {
        (settings.dlq_topic, "replication.factor", "1"),
        (keys, "min.compaction.lag.ms", "unset"),
    }


def test_numbers_compare_as_numbers_and_more_replicas_are_fine() -> None:
    need = TopicNeed("t", 1, 1, {"min.cleanable.dirty.ratio": "0.01"})
    assert (
        compare_topics([need], {"t": TopicState(1, 3, {"min.cleanable.dirty.ratio": "0.010"})})
        == []
    )


def test_a_missing_topic_is_one_intentstream_topics_creates() -> None:
    settings = _settings()
    needs = topic_needs(settings)
    found = _as_created(needs)
    del found[settings.dlq_topic]
    [difference] = compare_topics(needs, found)
    assert (difference.topic, difference.setting, difference.found) == (
        settings.dlq_topic,
        "topic",
        "missing",
    )
    assert difference.fixed_by_topics


def test_model_announcements_are_kept_for_good() -> None:
    """Regression: the broker's default retention dropped them after a week without a new
    version, and a worker started then served INTENTSTREAM_MODEL_PATH, not the current one."""
    settings = _settings()
    [models] = [need for need in topic_needs(settings) if need.name == settings.models_topic]
    assert models.configs == {"retention.ms": "-1", "cleanup.policy": "delete"}
    # An existing topic gets it from `intentstream topics` too (an enforced config).
    found = _changed(_as_created(topic_needs(settings)), models.name, retention_ms="604800000")
    [difference] = compare_topics(topic_needs(settings), found)
    assert (difference.setting, difference.fixed_by_topics) == ("retention.ms", True)


def test_campaigns_and_reports_are_compacted_and_spend_expires_after_three_days() -> None:
    settings = _settings()
    needs = {need.name: need for need in topic_needs(settings)}
    assert needs[settings.ads_campaigns_topic].configs == {"cleanup.policy": "compact"}
    assert needs[settings.ads_reports_topic].configs == {"cleanup.policy": "compact"}
    spend = needs[settings.ads_spend_topic]
    assert spend.configs == {
        "retention.ms": str(3 * 86_400_000),
        "segment.ms": "86400000",
        "cleanup.policy": "delete",
    }
    assert all(needs[name].partitions is None for name in (spend.name, settings.ads_reports_topic))


def test_a_compacted_spend_topic_is_reported_with_why_it_loses_spend() -> None:
    settings = _settings()
    needs = topic_needs(settings)
    found = _changed(_as_created(needs), settings.ads_spend_topic, cleanup_policy="compact")
    [difference] = compare_topics(needs, found)
    assert (difference.setting, difference.found, difference.needed) == (
        "cleanup.policy",
        "compact",
        "delete",
    )
    assert "lose the rest of its day's spend" in difference.why
    assert not difference.fixed_by_topics
