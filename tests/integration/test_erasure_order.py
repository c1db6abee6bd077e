"""An erasure on Apache Kafka cannot be undone by read order, lag or redelivery.

Shoppers send events and then an erase request, all before any worker runs, so
the worker may read either topic first. Then every event is delivered again, as
after a crash before the offsets were committed. Through all of it, no item a
shopper viewed before their erasure may come back in what they are recommended.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Callable

import orjson
import pytest
from aiokafka.structs import ConsumerRecord
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient
from kafka.structs import OffsetAndMetadata

from streams.settings import Settings
from tests.integration.kafka_io import produce

#: Why a run may end early: the stall docs/reliability.md describes, not an erasure that failed.
RECOVERY_STALL = (
    "known problem (docs/reliability.md#rebalances): a worker's table recovery after a "
    "rebalance received nothing from its changelog partitions until the next rebalance"
)

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

ReadTopic = Callable[..., list[ConsumerRecord[bytes, bytes]]]
USERS = 200


def _view(user: str, item: str, event_id: str) -> tuple[bytes, bytes]:
    event = {"event_id": event_id, "user_id": user, "ts": time.time(), "type": "view"}
    return user.encode(), orjson.dumps({**event, "item_id": item})


def _erase(user: str) -> tuple[bytes, bytes]:
    return user.encode(), orjson.dumps({"action": "erase", "request_id": f"req-{user}"})


def _lists(recommendations: list[ConsumerRecord[bytes, bytes]]) -> dict[str, list[str]]:
    """Each answered event id's recommended item ids."""
    values = (orjson.loads(m.value) for m in recommendations)
    return {v["event_id"]: [item["item_id"] for item in v["items"]] for v in values}


def _rewind(settings: Settings) -> None:
    """Commit offset 0 on every events partition: as if the worker crashed before committing."""
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap, group_id=settings.app_id)
    partitions = [TopicPartition(settings.events_topic, p) for p in range(settings.partitions)]
    consumer.assign(partitions)
    consumer.commit({tp: OffsetAndMetadata(0, None, -1) for tp in partitions})
    consumer.close()


def test_no_item_from_before_an_erasure_ever_comes_back(
    kafka_bootstrap: str,
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], subprocess.Popen[bytes]],
    stop_worker: Callable[[subprocess.Popen[bytes]], int],
    read_topic: ReadTopic,
) -> None:
    settings = make_settings(kafka_bootstrap, "kafka", partitions=4, text_search=False)
    users = [f"shopper-{n}" for n in range(USERS)]
    before = [_view(u, f"{u}-item-{k}", f"{u}-e{k}") for u in users for k in range(3)]
    asyncio.run(produce(settings.bootstrap, settings.events_topic, before))
    time.sleep(0.05)  # the requests are stamped after every event (LogAppendTime)
    asyncio.run(produce(settings.bootstrap, settings.privacy_requests_topic, map(_erase, users)))

    def check_next_events(round_: str, count: int) -> None:
        time.sleep(0.05)
        after = [_view(u, f"{u}-new-{round_}", f"{u}-{round_}") for u in users]
        asyncio.run(produce(settings.bootstrap, settings.events_topic, after))
        out = read_topic(settings.bootstrap, settings.recommendations_topic, count=count)
        answers = _lists(out)
        came_back = [
            (u, item)
            for u in users
            for item in answers[f"{u}-{round_}"]
            if item.startswith(f"{u}-item-")
        ]
        assert came_back == [], f"{len(came_back)} pre-erasure items came back ({round_})"

    worker = start_worker(settings)
    audits = read_topic(settings.bootstrap, settings.privacy_audit_topic, count=USERS)
    assert len(audits) == USERS
    # Whatever the worker read first, the 600 earlier events are answered or dropped, never both.
    early = read_topic(settings.bootstrap, settings.recommendations_topic, count=0, settle=2)
    check_next_events("r1", len(early) + USERS)

    # A crash before the commit: every event is delivered again to a restarted worker.
    assert stop_worker(worker) == 0
    _rewind(settings)
    start_worker(settings)
    check_next_events("r2", len(early) + 2 * USERS)


def _kcat(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    """Produce ``records`` with kcat, as the docs show a shop (librdkafka's partitioner)."""
    kcat = shutil.which("kcat")
    assert kcat, "kcat is not installed: make test installs it (Debian package kcat)"
    lines = b"".join(key + b"|" + value + b"\n" for key, value in records)
    subprocess.run(
        [kcat, "-P", "-b", bootstrap, "-t", topic, "-K", "|"], input=lines, check=True, timeout=60
    )


def _timestamp_type(bootstrap: str, topic: str) -> str:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        [response] = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        admin.close()
    [(_, _, _, _, entries)] = response.resources
    return str(dict((e[0], e[1]) for e in entries)["message.timestamp.type"])


def test_erasures_sent_with_kcat_before_the_topics_exist_are_final(
    kafka_bootstrap: str,
    make_settings: Callable[..., Settings],
    new_topic_name: Callable[[str], str],
    start_worker: Callable[[Settings], subprocess.Popen[bytes]],
    read_topic: ReadTopic,
) -> None:
    """kcat's first write auto-creates the input topics with the producer's clock (CreateTime);
    the worker must still apply each erasure after every earlier event of its user."""
    settings = make_settings(kafka_bootstrap, "kafka", text_search=False).model_copy(
        update={
            "events_topic": new_topic_name("kcat-events"),
            "privacy_requests_topic": new_topic_name("kcat-requests"),
        }
    )
    users = [f"kcat-shopper-{n}" for n in range(50)]
    _kcat(
        settings.bootstrap,
        settings.events_topic,
        [_view(u, f"{u}-item-{k}", f"{u}-e{k}") for u in users for k in range(3)],
    )
    _kcat(settings.bootstrap, settings.privacy_requests_topic, [_erase(u) for u in users])
    assert _timestamp_type(settings.bootstrap, settings.events_topic) == "CreateTime"
    start_worker(settings)
    audits = read_topic(settings.bootstrap, settings.privacy_audit_topic, count=len(users))
    assert len(audits) == len(users)
    for topic in (settings.events_topic, settings.privacy_requests_topic):
        assert _timestamp_type(settings.bootstrap, topic) == "LogAppendTime"
    early = read_topic(settings.bootstrap, settings.recommendations_topic, count=0, settle=2)
    time.sleep(0.05)
    _kcat(settings.bootstrap, settings.events_topic, [_view(u, "fresh", f"{u}-new") for u in users])
    out = read_topic(
        settings.bootstrap, settings.recommendations_topic, count=len(early) + len(users)
    )
    answers = _lists(out)
    assert all(f"{u}-new" in answers for u in users)
    came_back = [(u, i) for u in users for i in answers[f"{u}-new"] if i.startswith(f"{u}-item-")]
    assert came_back == []


def test_an_erasure_on_the_worker_a_partition_moved_to_holds_when_it_moves_back(
    kafka_bootstrap: str,
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], subprocess.Popen[bytes]],
    stop_worker: Callable[[subprocess.Popen[bytes]], int],
    read_topic: ReadTopic,
) -> None:
    """The first worker must not keep the states of partitions it gave away: erased
    on the second worker meanwhile, they would come back stale when they return."""
    settings = make_settings(kafka_bootstrap, "kafka", partitions=4, text_search=False)
    users = [f"moved-{n}" for n in range(40)]  # spread over the four partitions
    start_worker(settings)
    asyncio.run(
        produce(
            settings.bootstrap,
            settings.events_topic,
            [_view(u, f"{u}-item-0", f"{u}-e0") for u in users],
        )
    )
    read_topic(settings.bootstrap, settings.recommendations_topic, count=len(users))
    second = start_worker(settings)  # takes some partitions over
    time.sleep(0.05)
    asyncio.run(produce(settings.bootstrap, settings.privacy_requests_topic, map(_erase, users)))
    audits = read_topic(
        settings.bootstrap, settings.privacy_audit_topic, count=len(users), timeout=90
    )
    if len(audits) < len(users):
        pytest.xfail(RECOVERY_STALL)
    assert [orjson.loads(a.value)["outcome"] for a in audits] == ["erased"] * len(users)
    assert stop_worker(second) == 0  # its partitions go back to the first worker
    time.sleep(0.05)
    after = [_view(u, f"{u}-new", f"{u}-e1") for u in users]
    asyncio.run(produce(settings.bootstrap, settings.events_topic, after))
    out = read_topic(
        settings.bootstrap, settings.recommendations_topic, count=2 * len(users), timeout=90
    )
    answers = _lists(out)
    if any(f"{u}-e1" not in answers for u in users):
        pytest.xfail(RECOVERY_STALL)
    came_back = [u for u in users if f"{u}-item-0" in answers[f"{u}-e1"]]
    assert came_back == []
