"""Fuzzed records through a real worker on Apache Kafka: it survives, and each lands exactly once.

The in-process fuzz (``tests/unit/streams/pipeline/test_fuzz.py``) covers 100,000 records; this one
sends 5,000 through the whole path (broker, Faust, producer) and checks the worker
is still running afterwards.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections import Counter
from collections.abc import Callable

import orjson
import pytest
from aiokafka.structs import ConsumerRecord

from streams.pipeline.validation import Reason
from streams.settings import Settings
from tests.fuzz import fuzzed_records
from tests.integration.kafka_io import produce

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

N_RECORDS = 5_000


def test_a_worker_survives_fuzzed_input_and_accounts_for_every_record(
    kafka_bootstrap: str,
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], subprocess.Popen[bytes]],
    read_topics: Callable[..., dict[str, list[ConsumerRecord[bytes, bytes]]]],
) -> None:
    settings = make_settings(kafka_bootstrap, "kafka", partitions=2, text_search=False)
    worker = start_worker(settings)
    made = list(fuzzed_records(N_RECORDS, seed=11))
    asyncio.run(produce(settings.bootstrap, settings.events_topic, [(k, v) for k, v, _ in made]))
    topics = [settings.recommendations_topic, settings.dlq_topic]
    out = read_topics(settings.bootstrap, topics, count=N_RECORDS, timeout=120, settle=2)
    recommendations, letters = out[settings.recommendations_topic], out[settings.dlq_topic]
    assert worker.poll() is None, "the worker died"
    assert len(recommendations) + len(letters) == N_RECORDS
    reasons = Counter(dict(m.headers)["reason"].decode() for m in letters)
    assert Reason.PROCESSING_ERROR.value not in reasons, reasons
    offsets = [
        (int(dict(m.headers)["source_partition"]), int(dict(m.headers)["source_offset"]))
        for m in letters
    ]
    assert len(set(offsets)) == len(offsets)  # no record dead-lettered twice
    answered = {orjson.loads(m.value)["event_id"] for m in recommendations}
    unmutated = {orjson.loads(v or b"")["event_id"] for _, v, seed in made if seed}
    assert unmutated <= answered
