"""Sponsored items end to end on Apache Kafka, with a real worker serving a calibrated checkpoint.

A campaign loaded with ``intentstream ads campaigns`` reaches the worker's feed before it
is ready; the shopper's next answer carries one of its items marked sponsored; a
view of that item is a charged click, sent on the spend topic with the batch; the
frequency cap keeps the campaign out of the shopper's answers after that; a bad
campaign record lands in the DLQ with its reason.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.structs import ConsumerRecord

from model.calibration import ClickCalibrator
from model.checkpoint import load_checkpoint, save_calibrator
from streams.ops.ads import cmd_ads
from streams.pipeline.crypto import DLQ_PURPOSE, RecordSealer
from streams.settings import Settings
from tests.integration.events import ITEMS
from tests.integration.kafka_io import produce

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

BID = 0.4
CAP = 2
Read = Callable[..., list[ConsumerRecord[bytes, bytes]]]


def _campaign(cid: str, **fields: Any) -> dict[str, Any]:
    return {
        "campaign_id": cid,
        "advertiser": "acme",
        "items": list(ITEMS),
        "bid": {"per": "click", "amount": BID},
        "daily_budget": 1000.0,
        "start": 0,
        "end": None,
        **fields,
    }


def _view(n: int, item: str) -> tuple[bytes, bytes]:
    event = {"event_id": f"e{n}", "user_id": "u1", "ts": 1.7e9 + n, "type": "view", "item_id": item}
    return b"u1", orjson.dumps(event)


def _sponsored(record: ConsumerRecord[bytes, bytes]) -> list[dict[str, Any]]:
    return [item for item in orjson.loads(record.value)["items"] if item.get("sponsored")]


def test_a_campaign_is_shown_charged_on_a_click_capped_and_a_bad_one_dead_lettered(
    kafka_bootstrap: str,
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], subprocess.Popen[bytes]],
    tiny_checkpoint: Callable[..., Path],
    read_topic: Read,
    master_key: bytes,
    tmp_path: Path,
) -> None:
    run = tiny_checkpoint(tmp_path / "run", items=ITEMS)
    calibrator = ClickCalibrator(edges=(0, 100), clicks=(0.2,), purchases=(0.05,))
    save_calibrator(load_checkpoint(run).path, calibrator)
    settings = make_settings(
        kafka_bootstrap,
        "kafka",
        partitions=1,
        top_k=3,
        text_search=False,
        model_path=run,
        ads_frequency_cap=CAP,
    )
    campaigns = tmp_path / "campaigns.jsonl"
    campaigns.write_bytes(orjson.dumps(_campaign("c1")) + b"\n")
    assert cmd_ads(argparse.Namespace(action="campaigns", file=campaigns), settings) == 0
    bad = (b"not-c2", orjson.dumps(_campaign("c2")))
    asyncio.run(produce(settings.bootstrap, settings.ads_campaigns_topic, [bad]))
    start_worker(settings)  # ready only once the campaigns are read

    def answer(n: int, item: str) -> ConsumerRecord[bytes, bytes]:
        asyncio.run(produce(settings.bootstrap, settings.events_topic, [_view(n, item)]))
        recs = read_topic(settings.bootstrap, settings.recommendations_topic, count=n + 1, settle=0)
        [record] = [r for r in recs if orjson.loads(r.value)["event_id"] == f"e{n}"]
        return record

    [shown] = _sponsored(answer(0, "a"))
    assert shown["campaign_id"] == "c1" and shown["item_id"] in ITEMS
    # The shopper views the sponsored item: a click, charged at most the bid.
    clicked = _sponsored(answer(1, shown["item_id"]))
    spend = read_topic(settings.bootstrap, settings.ads_spend_topic, count=2, settle=0.5)
    deltas = [orjson.loads(record.value) for record in spend]
    assert {record.key for record in spend} == {b"c1"}
    assert sum(d["impressions"] for d in deltas) == 1 + len(clicked)
    assert sum(d["clicks"] for d in deltas) == 1
    charge = sum(d["spend"] for d in deltas)
    assert 0 < charge <= BID
    assert {d["day"] for d in deltas} == {"2023-11-14"}  # the events' day, not today
    # The cap: no more than CAP impressions of c1 for this shopper today.
    later = [_sponsored(answer(n, "b")) for n in range(2, 5)]
    assert 1 + len(clicked) + sum(map(len, later)) == CAP

    [letter] = read_topic(settings.bootstrap, settings.dlq_topic, count=1)
    assert dict(letter.headers)["reason"] == b"key_mismatch"
    assert dict(letter.headers)["source_topic"].decode() == settings.ads_campaigns_topic
    assert RecordSealer(master_key, purpose=DLQ_PURPOSE).open(letter.value) == bad
