"""Test sessions replayed event by event as a shop's stream, and the quality of what came back.

The offline protocol scores prefixes; a shop gets one list after each event. Here
each test session becomes a shopper's events, a case is answered by the list
served after its prefix's last event, and P@20 / MRR@20 are computed from those
lists. ``intentstream evaluate --stream-baseline`` runs the events through the
worker's own pipeline in this process (:func:`replay_in_process`);
``bench/served_quality.py`` runs the same events through a real worker on Kafka.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from rich.progress import track

from model.evaluation.evaluate import load_protocol
from model.evaluation.metrics import RankingMetrics, list_ranks
from model.serving.scorers import ItemScorer
from model.sessions import sessions_from_cases
from streams.pipeline.build import build_pipeline
from streams.pipeline.pseudonyms import Pseudonymizer
from streams.pipeline.records import InputRecord
from streams.settings import Settings

Event = dict[str, Any]
#: Epsilon that makes the shared-count releases exact (noise ~0, threshold ~1): "DP off".
NO_DP_EPSILON = 1e6


@dataclass(frozen=True)
class ReplayPlan:
    """The events to replay and how each test case is answered.

    Attributes:
        warmup: the training sessions' events, replayed first when the stream baseline
            is measured (it learns from the stream); empty otherwise.
        events: the test sessions' events, session by session.
        answers: per case, the id of the event whose recommendation answers it.
        targets: per case, the item that followed.
    """

    warmup: list[Event]
    events: list[Event]
    answers: list[str]
    targets: list[str]

    def quality(self, served: Mapping[str, Sequence[str]]) -> dict[str, float]:
        """P@20, MRR@20, HR@10, NDCG@10 (percent) of the lists ``served`` by event id.

        A case whose event got no recommendation counts as a miss; ``missing`` says
        how many did not.
        """
        metrics = RankingMetrics()
        lists = [served.get(event_id, ()) for event_id in self.answers]
        metrics.update_ranks(list_ranks(lists, self.targets))
        missing = sum(event_id not in served for event_id in self.answers)
        return {**metrics.result(), "missing": float(missing)}


def replay_plan(data: Path, *, warmup: bool) -> ReplayPlan:
    """The replay of ``data``'s test cases (any layout ``intentstream evaluate`` reads).

    Events are views one second apart (the training sessions' first, when
    ``warmup``), each session its own shopper.
    """
    protocol = load_protocol(data)
    sessions, where = sessions_from_cases(protocol.cases)
    ids = protocol.vocab.ids
    train = [[ids[i] for i in sequence] for sequence in protocol.train] if warmup else []
    warm = list(_session_events(train, "train", start_ts=1.0))
    start = warm[-1]["ts"] + 1.0 if warm else 1.0
    events = list(_session_events(sessions, "test", start_ts=start))
    offsets = [0]
    for session in sessions:
        offsets.append(offsets[-1] + len(session))
    answers = [events[offsets[s] + position]["event_id"] for s, position in where]
    return ReplayPlan(warm, events, answers, [target for _, target in protocol.cases])


def _session_events(
    sessions: Sequence[Sequence[str]], name: str, *, start_ts: float
) -> Iterator[Event]:
    ts = start_ts
    for number, session in enumerate(sessions):
        user = f"{name}-{number}"
        for position, item in enumerate(session):
            yield {
                "event_id": f"{user}-{position}",
                "user_id": user,
                "session_id": user,
                "ts": ts,
                "type": "view",
                "item_id": item,
            }
            ts += 1.0


def without_dp(settings: Settings) -> Settings:
    """``settings`` with exact shared-count releases (what a deployment without DP would learn)."""
    return settings.model_copy(
        update={
            "privacy_epsilon_per_window": NO_DP_EPSILON,
            "shared_counts_epsilon": NO_DP_EPSILON,
        }
    )


def replay_in_process(
    settings: Settings,
    events: Sequence[Event],
    *,
    scorer: ItemScorer | None = None,
    batch_size: int = 1000,
    progress: bool = False,
) -> dict[str, list[str]]:
    """Run ``events`` through the worker's pipeline here; the items served per event id.

    The pipeline is the one a worker builds (:func:`build_pipeline`, the stream
    baseline unless ``scorer``), with keys of its own and its tables in memory; each
    batch is one fetch of ``batch_size`` records of one partition.
    """
    pipeline = build_pipeline(
        settings,
        pseudonymizer=Pseudonymizer(secrets.token_bytes(32)),
        master_key=secrets.token_bytes(32),
        scorer=scorer,
    )
    states: dict[bytes, bytes] = {}
    keys: dict[bytes, bytes] = {}
    served: dict[str, list[str]] = {}
    starts = range(0, len(events), batch_size)
    for start in track(starts, description="replaying", disable=not progress, transient=True):
        records = [
            InputRecord(
                key=event["user_id"].encode(),
                value=orjson.dumps(event),
                topic=settings.events_topic,
                partition=0,
                offset=start + n,
                timestamp=float(event["ts"]),
            )
            for n, event in enumerate(events[start : start + batch_size])
        ]
        result = pipeline.process(records, read_state=states.get, read_key=keys.get)
        result.changes.apply(states, keys)
        for record in result.recommendations:
            body = orjson.loads(record.value or b"{}")
            served[body["event_id"]] = [item["item_id"] for item in body["items"]]
    return served
