"""The client and the documented producers against Apache Kafka and a real worker.

``EventProducer`` sends where the Java client would, an invalid event never
leaves it, a worker answers, and ``RecommendationConsumer`` yields its typed
answers, all of them or one user's; an erasure is applied. The kcat one-liners
and the Java example of docs/producing.md run as written (only the address and
topic names changed) and the worker accepts what they send. On Tansu, the demo's
broker, the client sends and reads one user's records.
"""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka.consumer.fetcher import ConsumerRecord

from streams.brokers.apache_kafka import KAFKA_VERSION
from streams.brokers.maven import install_kafka_jars
from streams.client import (
    EventProducer,
    InvalidEventError,
    Recommendation,
    RecommendationConsumer,
    partition_for,
)
from streams.pipeline.validation import Reason
from streams.settings import Settings

pytestmark = pytest.mark.integration

StartWorker = Callable[[Settings], subprocess.Popen[bytes]]

PARTITIONS = 3
USERS = ["u123", "u1", "u2", "u3", "shopper-42", "zoë", "ユーザー7"]
#: Longest wait for the worker's answers.
ANSWER_SECONDS = 60.0


def _event(n: int, user: str) -> dict[str, object]:
    event: dict[str, object] = {
        "event_id": f"ev-{n}",
        "user_id": user,
        "session_id": f"s-{user}",
        "ts": time.time(),
        "type": "search" if n % 4 == 3 else "view",
    }
    event |= {"query": "running shoes"} if n % 4 == 3 else {"item_id": f"i{n % 5}"}
    return event


def _records(settings: Settings, topic: str, **options: Any) -> Iterator[ConsumerRecord]:
    """The records of ``topic`` from its beginning, read with the client's consumer."""
    with RecommendationConsumer(settings, topic=topic, from_beginning=True, **options) as reader:
        yield from reader.records()


def _until(records: Iterator[ConsumerRecord], count: int) -> list[dict[str, Any]]:
    """The decoded values of the first ``count`` records (fewer if the records end)."""
    return [orjson.loads(record.value) for record in itertools.islice(records, count)]


@pytest.mark.kafka
def test_the_client_produces_where_java_would_and_reads_typed_answers(
    kafka_bootstrap: str, make_settings: Callable[..., Settings], start_worker: StartWorker
) -> None:
    settings = make_settings(kafka_bootstrap, "kafka", partitions=PARTITIONS, text_search=False)
    start_worker(settings)
    events = [_event(n, USERS[n % len(USERS)]) for n in range(14)]
    answers = RecommendationConsumer(settings, idle_timeout=ANSWER_SECONDS)  # from now on

    with EventProducer(settings) as producer:
        delivered = [producer.send(event) for event in events]
        with pytest.raises(InvalidEventError) as invalid:
            producer.send(_event(99, "u1") | {"type": "view", "item_id": None})
        report = producer.flush()
    assert invalid.value.reason is Reason.WRONG_TYPE
    assert (report.sent, report.failed, report.pending) == (len(events), (), 0)
    for event, future in zip(events, delivered, strict=True):
        written = future.result()
        assert written.record_id == event["event_id"]
        assert written.partition == partition_for(str(event["user_id"]), PARTITIONS)
    in_topic = list(_records(settings, settings.events_topic, stop_at_end=True))
    assert sorted(orjson.loads(record.value)["event_id"] for record in in_topic) == sorted(
        str(event["event_id"]) for event in events
    )  # and not the invalid ev-99
    for record in in_topic:
        user = orjson.loads(record.value)["user_id"]
        assert (record.key, record.partition) == (user.encode(), partition_for(user, PARTITIONS))

    with answers:
        got: dict[str, Recommendation] = {}
        for rec in answers:
            got[rec.event_id] = rec
            if len(got) == len(events):
                break
    assert set(got) == {str(event["event_id"]) for event in events}  # ev-99 was never sent
    for event in events:
        rec = got[str(event["event_id"])]
        assert rec.user_id == event["user_id"]
        assert rec.context == ("search" if event["type"] == "search" else "browse")
        assert rec.model_version and 0.0 <= rec.purchase_intent <= 1.0
        assert all(isinstance(item.score, float) for item in rec.items)

    with RecommendationConsumer(
        settings, user="zoë", from_beginning=True, stop_at_end=True
    ) as mine:
        assert [rec.event_id for rec in mine] == [
            str(event["event_id"]) for event in events if event["user_id"] == "zoë"
        ]

    with EventProducer(settings) as producer:
        request = producer.erase("u1", request_id="erase-u1").result(timeout=30)
    assert request.partition == partition_for("u1", PARTITIONS)
    audits = _until(
        _records(settings, settings.privacy_audit_topic, idle_timeout=ANSWER_SECONDS), 1
    )
    assert [(a["request_id"], a["outcome"]) for a in audits] == [("erase-u1", "erased")]
    assert list(_records(settings, settings.dlq_topic, stop_at_end=True)) == []


@pytest.fixture
def producing_md(repo_root: Path) -> str:
    return (repo_root / "docs" / "producing.md").read_text(encoding="utf-8")


def _documented(page: str, *needles: str) -> str:
    """The one ```bash block of ``page`` that holds every needle, as one command line."""
    blocks: list[str] = re.findall(r"```bash\n(.*?)```", page, flags=re.DOTALL)
    (block,) = [block for block in blocks if all(needle in block for needle in needles)]
    return block.replace("\\\n", " ").strip()


@pytest.mark.kafka
def test_the_documented_kcat_and_java_producers_reach_the_worker(
    kafka_bootstrap: str,
    make_settings: Callable[..., Settings],
    start_worker: StartWorker,
    settings: Settings,
    producing_md: str,
    repo_root: Path,
) -> None:
    kcat = shutil.which("kcat")
    assert kcat, "kcat is needed: apt-get install kcat (make test installs it)"
    served = make_settings(kafka_bootstrap, "kafka", partitions=PARTITIONS, text_search=False)
    start_worker(served)

    def run(command: str) -> str:
        done = subprocess.run(
            ["bash", "-c", command], capture_output=True, text=True, timeout=120, check=False,
            cwd=repo_root,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    def on_test_topics(command: str) -> str:
        command = command.replace("localhost:9092", kafka_bootstrap)
        for name in ("events_topic", "privacy_requests_topic"):
            default = re.escape(Settings.model_fields[name].default)
            command = re.sub(rf"(?<=\s){default}(?=\s|$)", getattr(served, name), command)
        return command

    run(on_test_topics(_documented(producing_md, "kcat -P", "-t shop.events")))
    libs = settings.home / "kafka" / KAFKA_VERSION / "libs"
    install_kafka_jars(libs, version=KAFKA_VERSION)
    java = _documented(producing_md, "ProduceEvent.java")
    assert f"$HOME/.cache/intentstream/kafka/{KAFKA_VERSION}/libs" in java
    java = java.replace(f"$HOME/.cache/intentstream/kafka/{KAFKA_VERSION}/libs", str(libs))
    sent = re.fullmatch(
        r"sent (\S+) to \S+ partition (\d+) offset \d+\n", run(on_test_topics(java))
    )
    assert sent, "ProduceEvent.java printed something else"
    java_event, java_partition = sent[1], int(sent[2])
    assert java_partition == partition_for("u123", PARTITIONS)

    answers = _until(_records(served, served.recommendations_topic, idle_timeout=ANSWER_SECONDS), 2)
    assert sorted(a["event_id"] for a in answers) == sorted(["e1", java_event])
    assert {a["user_id"] for a in answers} == {"u123"}
    events = list(_records(served, served.events_topic, stop_at_end=True))
    assert [(e.key, e.partition) for e in events] == [(b"u123", java_partition)] * 2

    run(on_test_topics(_documented(producing_md, "kcat -P", "-t shop.privacy.requests")))
    audits = _until(_records(served, served.privacy_audit_topic, idle_timeout=ANSWER_SECONDS), 1)
    assert [(a["request_id"], a["outcome"]) for a in audits] == [("r-2024-0042", "erased")]
    assert list(_records(served, served.dlq_topic, stop_at_end=True)) == []


@pytest.mark.tansu
def test_the_client_sends_and_reads_on_tansu(
    tansu_bootstrap: str, make_settings: Callable[..., Settings]
) -> None:
    """The demo's broker: no idempotent producer there, and its own end offsets."""
    settings = make_settings(tansu_bootstrap, "tansu", partitions=PARTITIONS)
    events = [_event(n, USERS[n % len(USERS)]) for n in range(10)]
    with EventProducer(settings) as producer:
        for event in events:
            producer.send(event)
        producer.erase("zoë", request_id="erase-zoe")
        assert producer.flush().sent == len(events) + 1

    with RecommendationConsumer(
        settings, topic=settings.events_topic, user="zoë", from_beginning=True, stop_at_end=True
    ) as mine:
        read = [
            (record.partition, orjson.loads(record.value)["event_id"]) for record in mine.records()
        ]
    zoe = partition_for("zoë", PARTITIONS)
    assert read == [(zoe, event["event_id"]) for event in events if event["user_id"] == "zoë"]
    requests = list(_records(settings, settings.privacy_requests_topic, stop_at_end=True))
    assert [(r.key, r.partition) for r in requests] == [("zoë".encode(), zoe)]
