"""Hot swap on Apache Kafka: a new version is served without a restart, a corrupt one is refused.

Events flow while versions are announced on ``shop.models``; every event gets
exactly one recommendation, each names the version that produced it, and a
version whose weights were corrupted in the store is rejected with the previous
one kept.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
import torch

from model.checkpoint import save_checkpoint
from model.config import ScorerConfig
from model.scorer import SequenceScorer
from model.serving.baseline import BASELINE_VERSION
from model.vocab import ItemVocab
from online_learning.registry import ModelStore
from streams.kafka.announce import announce, publish
from streams.settings import Settings
from tests.integration.kafka_io import collect, produce

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

ITEMS = ["a", "b", "c", "d", "e"]


def _checkpoint(run: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    model = SequenceScorer(ScorerConfig(n_items=6, d_model=16, n_heads=2, max_len=8))
    return save_checkpoint(
        run,
        epoch=1,
        model=model,
        optimizer=torch.optim.Adam(model.parameters()),
        vocab=ItemVocab.build([ITEMS]),
        meta={"metrics": {"P@20": 1.0}},
    )


def _events(start: int, count: int) -> list[tuple[bytes, bytes]]:
    out = []
    for n in range(start, start + count):
        user = f"u{n % 7}"
        event = {
            "event_id": f"e{n}",
            "user_id": user,
            "ts": 1.7e9 + n,
            "type": "view",
            "item_id": ITEMS[n % len(ITEMS)],
        }
        out.append((user.encode(), orjson.dumps(event)))
    return out


def _versions(settings: Settings, count: int) -> dict[str, str]:
    out = asyncio.run(
        collect(settings.bootstrap, [settings.recommendations_topic], count=count, settle=0.5)
    )[settings.recommendations_topic]
    pairs = [orjson.loads(m.value) for m in out]
    ids = Counter(p["event_id"] for p in pairs)
    assert max(ids.values()) == 1, "an event was answered twice"
    return {p["event_id"]: p["model_version"] for p in pairs}


def test_versions_swap_under_load_and_a_corrupt_one_is_rejected(
    kafka_bootstrap: str,
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    settings = make_settings(kafka_bootstrap, "kafka", partitions=2, model_store=tmp_path / "store")
    start_worker(settings)
    asyncio.run(produce(settings.bootstrap, settings.events_topic, _events(0, 50)))
    assert set(_versions(settings, 50).values()) == {BASELINE_VERSION}

    first = publish(settings, _checkpoint(tmp_path / "run1", seed=1), parent=None)
    sent = 50
    deadline = time.monotonic() + 60
    while True:  # keep events flowing until the new version answers
        asyncio.run(produce(settings.bootstrap, settings.events_topic, _events(sent, 10)))
        sent += 10
        if first.version in _versions(settings, sent).values() or time.monotonic() > deadline:
            break
    answered = _versions(settings, sent)
    assert len(answered) == sent and first.version in answered.values()

    store = ModelStore(settings.model_store, name=settings.model_name)
    second = store.publish(
        _checkpoint(tmp_path / "run2", seed=2), parent=first.version, metrics={}, privacy=None
    )
    (store.path(second.version) / "weights.pt").write_bytes(b"not a model")
    announce(settings, second)
    time.sleep(3)
    asyncio.run(produce(settings.bootstrap, settings.events_topic, _events(sent, 40)))
    answered = _versions(settings, sent + 40)
    assert len(answered) == sent + 40  # nothing lost across two swaps
    assert second.version not in answered.values()
    assert {answered[f"e{n}"] for n in range(sent, sent + 40)} == {first.version}
    assert store.info(second.version).status == "rejected"
