"""The operator's verbs on a real broker (Tansu): items load, send, erase, tail, dlq; and the
demo stopped by SIGTERM leaves nothing running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from kafka import KafkaProducer

from streams.kafka.admin import changelog_topic, ensure_topics
from streams.kafka.tables import KEY_TABLE
from streams.ops.cli import main
from streams.pipeline.crypto import DLQ_PURPOSE, RecordSealer, StateCipher, pack_record
from streams.pipeline.ledger import LedgerSealer, UserLedger
from streams.pipeline.working_set import USER_SEALED_DEAD_LETTER
from streams.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.tansu]

MASTER = bytes(range(32))


@pytest.fixture
def cli_settings(
    tansu_bootstrap: str,
    new_topic_name: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Settings:
    """Fresh topics on Tansu, as INTENTSTREAM_* variables for ``main``, and created."""
    for name in [n for n in os.environ if n.startswith("INTENTSTREAM_")]:
        monkeypatch.delenv(name)
    values = {
        "KAFKA": tansu_bootstrap,
        "BROKER_KIND": "tansu",
        "HOME": str(tmp_path / "home"),
        "APP_ID": new_topic_name("app"),
        "PARTITIONS": "2",
        "MASTER_KEY": MASTER.hex(),
        **{
            f"{topic.upper()}_TOPIC": new_topic_name(topic)
            for topic in ("events", "items", "recommendations", "dlq", "privacy_requests")
        },
    }
    for name, value in values.items():
        monkeypatch.setenv(f"INTENTSTREAM_{name}", value)
    settings = Settings()
    ensure_topics(settings)
    return settings


def produce(settings: Settings, topic: str, records: list[tuple[bytes | None, bytes | None]],
            headers: list[list[tuple[str, bytes]]] | None = None) -> None:  # fmt: skip
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap)
    for n, (key, value) in enumerate(records):
        producer.send(topic, value=value, key=key, headers=headers[n] if headers else None)
    producer.flush()
    producer.close()


def recommendation(user: str, n: int) -> bytes:
    return orjson.dumps(
        {"user_id": user, "event_id": f"e{n}", "ts": 1.7e9 + n, "context": "browse",
         "items": [{"item_id": f"i{n}", "score": 0.5}], "purchase_intent": 0.1,
         "model_version": "baseline-cooc-1", "latency_ms": 1.0}
    )  # fmt: skip


def test_items_load_then_tail_reads_them_back_and_exits(
    cli_settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalogue = tmp_path / "items.csv"
    catalogue.write_text("id,title,category\ni1,Red shoe,shoes\ni2,Hat,\n")
    assert main(["items", "load", str(catalogue)]) == 0
    assert "published 2 items" in capsys.readouterr().out
    assert main(["tail", "--topic", cli_settings.items_topic]) == 0  # exits at the end
    lines = capsys.readouterr().out.splitlines()
    assert sorted(map(json.loads, lines), key=lambda item: item["id"]) == [
        {"id": "i1", "title": "Red shoe", "category": "shoes"},
        {"id": "i2", "title": "Hat"},
    ]


def test_send_and_erase_reach_their_topics_keyed_by_user(
    cli_settings: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["send", '{"user_id": "u1", "type": "view", "item_id": "i1"}']) == 0
    assert "sent event" in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO('{"user_id": "u1", "type": "x"}'))
    assert main(["send"]) == 2
    assert "unknown_event_type" in capsys.readouterr().err
    assert main(["erase", "u1"]) == 0
    assert "erasure request erase-" in capsys.readouterr().out
    assert main(["tail", "--topic", cli_settings.events_topic]) == 0
    [event] = map(json.loads, capsys.readouterr().out.splitlines())
    assert (event["user_id"], event["type"]) == ("u1", "view") and event["event_id"]
    assert main(["tail", "--topic", cli_settings.privacy_requests_topic]) == 0
    [request] = map(json.loads, capsys.readouterr().out.splitlines())
    assert (request["action"], request["user_id"]) == ("erase", "u1")


def test_tail_prints_one_users_recommendations_and_exits_at_the_end(
    cli_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    records = [(user.encode(), recommendation(user, n)) for n, user in enumerate("abab")]
    produce(cli_settings, cli_settings.recommendations_topic, records)
    assert main(["tail", "--user", "a"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:3] for line in lines] == [["a", "browse", "[i0"], ["a", "browse", "[i2"]]
    assert main(["tail", "--limit", "3"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3


def test_dlq_prints_reasons_and_unseals_with_the_master_key(
    cli_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    user, erased = b"a" * 32, b"b" * 32
    cipher, ledgers = StateCipher(MASTER), LedgerSealer(MASTER)
    keys = {who: cipher.new_wrapped_key(who) for who in (user, erased)}
    letters = [
        (None, RecordSealer(MASTER, purpose=DLQ_PURPOSE).seal(None, b'{"oops')),
        *[
            (None, bytes([USER_SEALED_DEAD_LETTER]) + cipher.seal(
                who, keys[who], pack_record(b"u-raw", b'{"type": "x"}')))
            for who in (user, erased)
        ],
    ]  # fmt: skip
    position = [("source_topic", b"shop.events"), ("source_partition", b"0")]
    headers = [
        [("reason", b"invalid_json"), ("detail", b"bad"), *position, ("source_offset", b"1")],
        *[
            [("reason", b"unknown_event_type"), ("detail", b"type"), *position,
             ("source_offset", str(n).encode()), ("user", who)]
            for n, who in ((2, user), (3, erased))
        ],
    ]  # fmt: skip
    produce(cli_settings, cli_settings.dlq_topic, letters, headers)
    key_changelog = changelog_topic(cli_settings, KEY_TABLE)
    sealed = {who: ledgers.seal(who, UserLedger(wrapped_key=keys[who])) for who in keys}
    produce(cli_settings, key_changelog, [(user, sealed[user]), (erased, sealed[erased])])
    produce(cli_settings, key_changelog, [(erased, None)])  # the erasure's tombstone

    assert main(["dlq"]) == 0
    shut = capsys.readouterr().out.splitlines()
    assert sorted(line.split(" from ")[0].split()[1] for line in shut) == [
        "invalid_json", "unknown_event_type", "unknown_event_type"
    ]  # fmt: skip
    assert "u-raw" not in "".join(shut) and "oops" not in "".join(shut)

    assert main(["dlq", "--unseal"]) == 0
    lines = capsys.readouterr().out.splitlines()
    opened = {line.split(" from shop.events 0@")[1][0]: line for line in lines}
    assert opened["1"].endswith("| key=null value='{\"oops'")
    assert opened["2"].endswith("| key='u-raw' value='{\"type\": \"x\"}'")
    assert "| shredded" in opened["3"]


def test_the_demo_stopped_by_sigterm_stops_its_broker_and_worker(
    tmp_path: Path, free_port: Callable[..., int]
) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("INTENTSTREAM_")}
    home = tmp_path / "home"
    environment["INTENTSTREAM_HOME"] = str(home)
    port = free_port()
    demo = subprocess.Popen(
        [sys.executable, "-m", "streams.ops.cli", "demo", "--no-model", "--limit", "2000",
         "--rate", "20", "--port", str(port)],
        env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    ready = home / "demo-worker.ready"
    pid_file = home / "brokers" / f"tansu-{port}" / "broker.pid"
    try:
        deadline = time.monotonic() + 180
        while not ready.exists():
            assert demo.poll() is None, demo.communicate()[1]
            assert time.monotonic() < deadline, "the demo's worker was not ready in 180 s"
            time.sleep(0.2)
        worker, broker = json.loads(ready.read_text())["pid"], int(pid_file.read_text())
        demo.send_signal(signal.SIGTERM)
        _, err = demo.communicate(timeout=90)
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    for pid in (worker, broker):
        assert not _alive(pid), f"pid {pid} still runs"
    assert not pid_file.exists()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is as good as gone
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except OSError:
        return False
