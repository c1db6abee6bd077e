"""A worker serving a trained checkpoint with the item catalogue, on Apache Kafka.

Checks the serving path end to end: the checkpoint answers users whose items it
knows and names its version, the baseline answers the rest, a Chinese search
finds the English-titled item, a new item with only a title reaches a related
user, a bad catalogue record lands in the DLQ with its reason, and the worker
ranks with the mix its checkpoint carries.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from aiokafka.structs import ConsumerRecord

from model.checkpoint import load_checkpoint, save_ranker
from model.ranking.knn import item_matrix
from model.ranking.parts import FusionWeights, RankerParts
from model.serving.baseline import BASELINE_VERSION
from model.serving.scorers import CheckpointScorer
from online_learning.sources import checkpoint_meta
from streams.ops.catalogue import item_record
from streams.pipeline.crypto import DLQ_PURPOSE, RecordSealer
from streams.settings import Settings
from tests.integration.kafka_io import produce

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

TITLES = {
    "a": "red running shoes",
    "b": "blue running shoes",
    "c": "stainless steel kettle",
    "d": "wireless bluetooth headphones",
    "e": "yoga mat",
    "new-shoe-zh": "女士跑步鞋",  # women's running shoes: no history anywhere
}


def _event(n: int, user: str, **fields: str) -> tuple[bytes, bytes]:
    kind = "search" if "query" in fields else "view"
    event = {"event_id": f"e{n}", "user_id": user, "ts": 1.7e9 + n, "type": kind, **fields}
    return user.encode(), orjson.dumps(event)


def test_worker_serves_the_checkpoint_search_and_cold_start(
    kafka_bootstrap: str,
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], subprocess.Popen[bytes]],
    tiny_checkpoint: Callable[..., Path],
    read_topics: Callable[..., dict[str, list[ConsumerRecord[bytes, bytes]]]],
    master_key: bytes,
    tmp_path: Path,
) -> None:
    version = checkpoint_meta(tiny_checkpoint(tmp_path / "run"))["version"]
    settings = make_settings(
        kafka_bootstrap, "kafka", partitions=1, top_k=5, model_path=tmp_path / "run"
    )
    items = [(k.encode(), orjson.dumps({"id": k, "title": t})) for k, t in TITLES.items()]
    bad_item = (b"x", orjson.dumps({"id": "x"}))
    asyncio.run(produce(settings.bootstrap, settings.items_topic, [*items, bad_item]))
    start_worker(settings)  # ready only once the catalogue is loaded

    events = [
        _event(0, "u1", item_id="a"),
        _event(1, "u2", item_id="unknown-item"),
        _event(2, "u3", query="不锈钢水壶"),  # "stainless steel kettle"
    ]
    asyncio.run(produce(settings.bootstrap, settings.events_topic, events))
    out = read_topics(
        settings.bootstrap, [settings.recommendations_topic, settings.dlq_topic], count=4
    )
    recs = {
        orjson.loads(m.value)["event_id"]: orjson.loads(m.value)
        for m in out[settings.recommendations_topic]
    }
    assert recs["e0"]["model_version"] == version
    assert "new-shoe-zh" in [item["item_id"] for item in recs["e0"]["items"]]
    assert recs["e1"]["model_version"] == BASELINE_VERSION
    assert recs["e2"]["context"] == "search" and recs["e2"]["items"][0]["item_id"] == "c"
    [letter] = out[settings.dlq_topic]
    assert RecordSealer(master_key, purpose=DLQ_PURPOSE).open(letter.value) == bad_item
    assert dict(letter.headers)["reason"] == b"missing_field"
    assert dict(letter.headers)["source_topic"].decode() == settings.items_topic


def test_the_worker_serves_the_lists_of_the_checkpoints_ranker(
    kafka_bootstrap: str,
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], subprocess.Popen[bytes]],
    tiny_checkpoint: Callable[..., Path],
    read_topics: Callable[..., dict[str, list[ConsumerRecord[bytes, bytes]]]],
    tmp_path: Path,
) -> None:
    """The mix in ``ranker.npz`` is what the worker ranks with: kNN alone here."""
    run = tiny_checkpoint(tmp_path / "run")
    checkpoint = load_checkpoint(run)
    index = checkpoint.vocab.index
    sessions = [["a", "c"], ["a", "c"], ["a", "c", "e"], ["b", "d"]]
    parts = RankerParts(
        weights=FusionWeights(transformer=0.0, neighbours=1.0, recent=0.0),
        sessions=item_matrix(
            [[index[i] for i in s] for s in sessions], n_items=checkpoint.model.config.n_items
        ),
    )
    save_ranker(checkpoint.path, parts)
    settings = make_settings(kafka_bootstrap, "kafka", partitions=1, top_k=3, model_path=run)
    start_worker(settings)
    asyncio.run(produce(settings.bootstrap, settings.events_topic, [_event(0, "u1", item_id="a")]))
    out = read_topics(settings.bootstrap, [settings.recommendations_topic], count=1)
    [served] = [orjson.loads(m.value) for m in out[settings.recommendations_topic]]
    expected = CheckpointScorer(load_checkpoint(run)).score_many([["a"]], k=3)[0]
    assert [(i["item_id"], i["score"]) for i in served["items"]] == expected
    ids = [i["item_id"] for i in served["items"]]
    assert ids.index("c") < ids.index("e") and "b" not in ids  # what the sessions say


def test_a_new_shops_worker_answers_full_lists_from_its_catalogue(
    kafka_bootstrap: str,
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], subprocess.Popen[bytes]],
    read_topics: Callable[..., dict[str, list[ConsumerRecord[bytes, bytes]]]],
) -> None:
    """No history, no release yet, no text search: the catalogue alone fills each list with
    top_k items, the shopper's own item first and its category's items next."""
    settings = make_settings(kafka_bootstrap, "kafka", partitions=1, top_k=5, text_search=False)
    catalogue = {"s1": "shoes", "s2": "shoes", "s3": "shoes", "k1": "kitchen", "k2": None}
    records = [(k.encode(), item_record(k, c)) for k, c in catalogue.items()]
    asyncio.run(produce(settings.bootstrap, settings.items_topic, records))
    start_worker(settings)  # ready only once the catalogue is loaded
    events = [_event(0, "u1", item_id="s2"), _event(1, "u2", item_id="not-in-catalogue")]
    asyncio.run(produce(settings.bootstrap, settings.events_topic, events))
    out = read_topics(settings.bootstrap, [settings.recommendations_topic], count=2)
    lists = {
        orjson.loads(m.value)["event_id"]: [i["item_id"] for i in orjson.loads(m.value)["items"]]
        for m in out[settings.recommendations_topic]
    }
    assert lists["e0"][:3] == ["s2", "s1", "s3"] and set(lists["e0"]) == set(catalogue)
    assert len(lists["e1"]) == 5 and lists["e1"][0] == "not-in-catalogue"
