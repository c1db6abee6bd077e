"""Builds an :class:`EventPipeline` and its collaborators from the settings.

The one place where the stages are wired together; the worker, the tests and the
benches all build their pipeline here.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from model.serving.baseline import CooccurrenceRecommender
from model.serving.catalogue import CatalogueItems, TextCatalogue
from model.serving.ranker import ContextRanker, QueryEncoder, RankerConfig
from model.serving.scorers import ItemScorer
from model.serving.text import TextBudget
from streams.pipeline.ads.campaigns import CampaignBook
from streams.pipeline.ads.spend import SpendBook
from streams.pipeline.ads.stage import AdsRules, AdsStage
from streams.pipeline.answers import Answers
from streams.pipeline.batch import EventPipeline
from streams.pipeline.crypto import DLQ_PURPOSE, RecordSealer, StateCipher
from streams.pipeline.intent import IntentPredictor
from streams.pipeline.ledger import LedgerSealer
from streams.pipeline.monitor import OnlineMonitor
from streams.pipeline.pseudonyms import Pseudonymizer
from streams.pipeline.scoring import Scoring
from streams.pipeline.search import ReadOnlySearch
from streams.pipeline.shared_counts import SharedCounts, SharingConfig
from streams.pipeline.validation import InputValidation
from streams.pipeline.watermark import Watermark
from streams.settings import Settings

#: A user's last activity is rewritten once per this fraction of the state TTL, so
#: expiry is at most this much late and an active user's ledger is rarely written.
LAST_SEEN_STEPS = 10


def build_pipeline(
    settings: Settings,
    *,
    pseudonymizer: Pseudonymizer,
    master_key: bytes,
    clock: Callable[[], float] = time.time,
    scorer: ItemScorer | None = None,
    items: CatalogueItems | None = None,
    catalogue: TextCatalogue | None = None,
    encode_queries: QueryEncoder | None = None,
    cipher: StateCipher | None = None,
    worker_id: str | None = None,
) -> EventPipeline:
    """The worker's pipeline: the stream baseline, or ``scorer`` with the baseline as fallback.

    Args:
        settings: the one configuration object.
        pseudonymizer: keyed pseudonyms of user and session ids.
        master_key: the master key that wraps each user's data key and seals dead letters.
        clock: wall-clock time of recommendations and audits.
        scorer: a trained model to serve from the start (None: the stream baseline).
        items: the public catalogue (ids, categories): popularity over it is released
            without a threshold, and lists are filled from it.
        catalogue: item titles as text vectors, for search and cold start.
        encode_queries: the text encoder of search queries (with ``catalogue``); it is
            given each batch's queries cut to ``max_query_chars(_per_batch)``.
        cipher: seals per-user state (default: AES-GCM under ``master_key``).
        worker_id: this process's id in its spend records (default: a random one, so
            a restarted worker never takes its predecessor's records for its own).
    """
    items = items if items is not None else CatalogueItems()
    baseline = CooccurrenceRecommender(catalogue=items)
    intent = IntentPredictor()
    shared = SharedCounts(
        SharingConfig(
            budget_epsilon=settings.privacy_epsilon_per_window,
            epsilon=settings.shared_counts_epsilon,
            delta=settings.shared_counts_delta,
            max_items=settings.shared_counts_max_items,
            window_seconds=settings.privacy_window_seconds,
        ),
        recommender=baseline,
        intent=intent.rate,
        cell_intent=intent.cell,
        catalogue=items,
    )
    queries = TextBudget(
        max_chars=settings.max_query_chars, max_batch_chars=settings.max_query_chars_per_batch
    )
    ranker = ContextRanker(
        scorer if scorer is not None else baseline,
        fallback=baseline,
        catalogue=catalogue,
        encode_queries=queries.bind(encode_queries) if encode_queries is not None else None,
        config=RankerConfig(top_k=settings.top_k),
    )
    cipher = cipher if cipher is not None else StateCipher(master_key)
    ledgers = LedgerSealer(master_key)
    seen_every = settings.state_ttl_seconds / LAST_SEEN_STEPS
    answers = Answers(
        recommendations_topic=settings.recommendations_topic,
        audit_topic=settings.privacy_audit_topic,
        dlq_topic=settings.dlq_topic,
        seal=RecordSealer(master_key, purpose=DLQ_PURPOSE).seal,
        clock=clock,
    )
    campaigns = CampaignBook(max_campaigns=settings.ads_max_campaigns)
    spend = SpendBook(
        worker_id if worker_id is not None else secrets.token_hex(8),
        campaigns=campaigns,
        pacing_slack=settings.ads_pacing_slack,
    )
    ads = AdsStage(AdsRules.from_settings(settings), campaigns=campaigns, spend=spend)
    return EventPipeline(
        requests_topic=settings.privacy_requests_topic,
        history_len=settings.history_len,
        validate=InputValidation(
            events_topic=settings.events_topic,
            requests_topic=settings.privacy_requests_topic,
            max_bytes=settings.max_event_bytes,
            future_seconds=settings.ts_future_tolerance_seconds,
        ),
        pseudonyms=pseudonymizer,
        cipher=cipher,
        ledgers=ledgers,
        seen_every=seen_every,
        shared=shared,
        watermark=Watermark(idle_seconds=settings.watermark_idle_seconds),
        intent=intent,
        monitor=OnlineMonitor(
            probation_events=settings.probation_events,
            probation_max_drop=settings.probation_max_drop,
        ),
        scoring=Scoring(ranker=ranker, answers=answers, ads=ads),
        search=ReadOnlySearch(
            cipher, ledgers, seen_every=seen_every, ranker=ranker, intent=intent, clock=clock
        ),
    )
