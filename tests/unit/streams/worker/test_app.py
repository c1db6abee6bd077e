"""The app is configured for the broker it talks to."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from streams.errors import ConfigurationError
from streams.kafka.admin import topic_specs
from streams.kafka.transport import (
    FETCH_MAX_WAIT_MS,
    BatchingConsumer,
    ShortWaitConsumer,
    TansuTransport,
    Transport,
)
from streams.settings import Settings
from streams.worker.app import create_app, load_scorer

KEY = b"k" * 32


def test_tansu_latency_fix_uses_the_short_fetch_wait_transport() -> None:
    app = create_app(
        Settings(broker_kind="tansu", kafka="127.0.0.1:1"), pseudonym_key=KEY, master_key=bytes(32)
    )
    assert type(app.transport) is TansuTransport
    assert app.transport.Consumer is ShortWaitConsumer
    assert issubclass(ShortWaitConsumer, BatchingConsumer)
    assert FETCH_MAX_WAIT_MS <= 50
    assert app.conf.broker_session_timeout == 6.0


def test_apache_kafka_uses_the_batching_transport_with_batch_sized_polls() -> None:
    settings = Settings(broker_kind="kafka", kafka="127.0.0.1:1", batch_max=777)
    app = create_app(settings, pseudonym_key=KEY, master_key=bytes(32))
    assert type(app.transport) is Transport
    assert app.transport.Consumer is ShortWaitConsumer
    assert app.conf.broker_max_poll_records == 777


def test_app_routes_the_inputs_in_batches_and_has_the_user_table() -> None:
    settings = Settings(broker_kind="kafka", kafka="127.0.0.1:1", partitions=3)
    app = create_app(settings, pseudonym_key=KEY, master_key=bytes(32))
    assert app.batch_route is not None
    assert app.batch_route.topics == {settings.events_topic, settings.privacy_requests_topic}
    table = app.tables["user_state"]
    assert table.partitions == 3
    assert table.changelog_topic.get_topic_name() == "intentstream-user_state-changelog"


def test_keys_table_compacts_fast_and_the_agent_reads_privacy_requests() -> None:
    settings = Settings(broker_kind="kafka", kafka="127.0.0.1:1", partitions=3)
    app = create_app(settings, pseudonym_key=KEY, master_key=bytes(32))
    keys = app.tables["user_keys"]
    assert keys.partitions == 3
    assert keys.changelog_topic.config["delete.retention.ms"] == "10000"
    assert keys.changelog_topic.compacting
    subscribed = {name for topic in app.topics._topics for name in topic.topics}
    assert {settings.events_topic, settings.privacy_requests_topic} <= subscribed


def test_the_changelog_topics_created_up_front_are_the_ones_faust_recovers_from() -> None:
    settings = Settings(broker_kind="kafka", kafka="127.0.0.1:1", partitions=3, app_id="shop-a")
    app = create_app(settings, pseudonym_key=KEY, master_key=bytes(32))
    specs = {spec.name: spec for spec in topic_specs(settings)}
    for table in ("user_state", "user_keys"):
        spec = specs[app.tables[table].changelog_topic.get_topic_name()]
        assert spec.num_partitions == 3
        assert spec.topic_configs["cleanup.policy"] == "compact"
    keys = specs[app.tables["user_keys"].changelog_topic.get_topic_name()]
    assert keys.topic_configs["delete.retention.ms"] == "10000"


def test_a_worker_requiring_dp_models_refuses_a_non_private_checkpoint(
    tmp_path: Path, tiny_checkpoint: Callable[..., Path]
) -> None:
    plain = tiny_checkpoint(tmp_path / "plain")
    private = tiny_checkpoint(
        tmp_path / "private", meta={"privacy": {"epsilon": 8.0, "delta": 1e-5}}
    )
    with pytest.raises(ConfigurationError, match="REQUIRE_DP_MODELS"):
        load_scorer(Settings(model_path=plain, require_dp_models=True))
    assert load_scorer(Settings(model_path=private, require_dp_models=True)) is not None
    assert load_scorer(Settings(model_path=plain)) is not None


def test_the_app_advertises_its_http_api_through_fausts_assignor() -> None:
    """Faust's own PartitionAssignor shares canonical_url with the group: the routes' source."""
    from faust.assignor import PartitionAssignor

    settings = Settings(broker_kind="kafka", kafka="127.0.0.1:1")
    app = create_app(settings, pseudonym_key=KEY, master_key=bytes(32), web_url="http://w1:8123")
    assert str(app.conf.canonical_url) == "http://w1:8123"
    assert type(app.assignor) is PartitionAssignor
    assert app.assignor._metadata.url == "http://w1:8123"
    assert not app.conf.web_enabled  # Faust's web views stay off: the API is our own
    assert app.api.lists_held() == 0 and not app.api.started


async def test_a_partition_given_away_takes_its_users_latest_lists() -> None:
    """Else they would be answered stale when the partition comes back."""
    from faust.types import TP

    from streams.pipeline.pseudonyms import Pseudonymizer

    settings = Settings(broker_kind="kafka", kafka="127.0.0.1:1", partitions=4)
    app = create_app(settings, pseudonym_key=KEY, master_key=bytes(32))
    users = {name: Pseudonymizer(KEY).one(name).encode() for name in ("u1", "u2")}
    app.api._latest.update({users["u1"]: (1, b'{"event_id":"e1"}')})
    app.api._latest.update({users["u2"]: (2, b'{"event_id":"e2"}')})
    await app.on_partitions_revoked.send({TP(settings.events_topic, 1), TP("other", 2)})
    assert app.api.latest("u1") is None
    assert app.api.latest("u2") == b'{"user_id":"u2","event_id":"e2"}'
