"""The core settings: brokers, topics, keys, privacy budgets, the worker and its model.

A group of :class:`streams.settings.Settings`; read only through it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator

BrokerKind = Literal["tansu", "kafka"]

#: Where local brokers, pid files, logs and generated keys live (outside the repo).
DEFAULT_HOME = Path.home() / ".cache" / "intentstream"

#: The folder holding pyproject.toml, against which a relative ``data_dir`` is resolved.
PROJECT_ROOT = Path(__file__).resolve().parents[2]

#: Default listener port per local broker kind, so both can run side by side.
DEFAULT_PORTS: dict[str, int] = {"tansu": 9092, "kafka": 9192}


def _under_home(name: str) -> Callable[[dict[str, Any]], Path]:
    """Default of a path setting: ``name`` in the ``home`` folder (``INTENTSTREAM_HOME``)."""
    return lambda data: data.get("home", DEFAULT_HOME) / name


class CoreSettings(BaseModel):
    """Everything but the groups of their own (security, learner, HTTP API, ads)."""

    kafka: str | None = Field(
        default=None,
        description="Bootstrap servers of an existing cluster; unset = the local broker.",
    )
    broker_kind: BrokerKind = Field(
        default="tansu",
        description="Which broker the bootstrap address points at; 'tansu' turns on the "
        "work-arounds for its quirks (docs/operating.md). `--bootstrap` alone implies 'kafka'.",
    )
    home: Path = Field(
        default=DEFAULT_HOME,
        description="State folder: local brokers, the demo's runs and the default key files "
        "and model store.",
    )
    app_id: str = Field(default="intentstream", description="Faust app id = consumer group.")
    partitions: int = Field(default=8, ge=1, description="Partitions of created topics.")

    events_topic: str = Field(default="shop.events", description="Input events.")
    items_topic: str = Field(default="shop.items", description="Item catalogue (compacted).")
    recommendations_topic: str = Field(
        default="shop.recommendations", description="Output recommendations."
    )
    dlq_topic: str = Field(default="shop.events.dlq", description="Rejected inputs, with reasons.")
    privacy_requests_topic: str = Field(
        default="shop.privacy.requests", description="Erasure requests."
    )
    privacy_audit_topic: str = Field(
        default="shop.privacy.audit", description="Outcome of privacy requests."
    )
    models_topic: str = Field(default="shop.models", description="Model version announcements.")

    pseudonym_key: SecretStr | None = Field(
        default=None, description="HMAC key for user pseudonyms (wins over the key file)."
    )
    pseudonym_key_file: Path = Field(
        default_factory=_under_home("pseudonym.key"),
        description="File holding the HMAC key; the demo creates it (mode 0600) if missing.",
    )
    master_key: SecretStr | None = Field(
        default=None,
        description="Master key (64 hex digits, AES-256) wrapping each user's state key "
        "(wins over the key file).",
    )
    master_key_file: Path = Field(
        default_factory=_under_home("master.key"),
        description="File holding the state master key; the demo creates it (mode 0600) "
        "if missing.",
    )

    privacy_window_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="Length of a privacy window in event-time seconds: budgets, contribution "
        "bounds and shared-count releases are per window.",
    )
    privacy_epsilon_per_window: float = Field(
        default=2.0, gt=0, description="Each user's differential-privacy budget per window."
    )
    shared_counts_epsilon: float = Field(
        default=1.0,
        gt=0,
        description="Epsilon a user spends per window on the shared popularity, next-item and "
        "purchase-rate counts the baseline learns from.",
    )
    shared_counts_delta: float = Field(
        default=1e-6, gt=0, lt=1, description="Delta of each window's shared-count release."
    )
    shared_counts_max_items: int = Field(
        default=3, ge=1, description="Distinct items one user adds to the shared counts per window."
    )
    # Erasure, expiry and timestamps
    watermark_idle_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Privacy windows close when every input partition a worker reads has "
        "passed their end in event time; a partition with no event for this many wall-clock "
        "seconds stops holding them open.",
    )
    ts_future_tolerance_seconds: float = Field(
        default=300.0,
        gt=0,
        description="Most seconds an event's ts may be ahead of its record's broker timestamp; "
        "later ones go to the DLQ (bad_timestamp), so no event can close the privacy "
        "windows early.",
    )
    raw_topic_retention_seconds: float = Field(
        default=604_800.0,
        gt=0,
        description="retention.ms and segment.ms given to the raw-id topics (events, "
        "recommendations, privacy requests and audit) and the DLQ.",
    )
    state_ttl_seconds: float = Field(
        default=2_592_000.0,
        gt=0,
        description="A user inactive this long (no event, no erasure) has their state, key and "
        "ledger deleted. At least twice raw_topic_retention_seconds (Kafka deletes whole "
        "segments, so a record can stay up to retention.ms + segment.ms), so an erasure's "
        "marker outlives every event it must stop.",
    )
    # Model versions: privacy and authenticity
    require_dp_models: bool = Field(
        default=False,
        description="Workers refuse announced model versions that are not DP-trained (privacy "
        "null) and keep serving what they have, and refuse to start with a model_path "
        "checkpoint that is not DP-trained.",
    )
    model_store_keep: int = Field(
        default=20,
        ge=1,
        description="Most versions the model store keeps: publishing deletes the oldest beyond "
        "it, never CURRENT or its parent.",
    )
    probation_events: int = Field(
        default=500,
        ge=1,
        description="Online checks of a new model version's lists before it is judged.",
    )
    probation_max_drop: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="Largest drop of online HR@10 (a fraction) a new version may show against "
        "the previous one before it is rejected and the previous one restored.",
    )
    max_event_bytes: int = Field(default=65_536, ge=256, description="Larger inputs go to the DLQ.")
    batch_max: int = Field(default=2_000, ge=1, description="Most events one fetched batch holds.")
    stall_seconds: float = Field(
        default=60.0,
        gt=0,
        description="A ready worker whose fetch loop is still this long, or whose table "
        "recovery receives nothing this long, or that rebalances 10 times as long, exits "
        "with status 75 to be restarted (streams/worker/watchdog.py).",
    )
    top_k: int = Field(default=20, ge=1, le=200, description="Items per recommendation.")
    history_len: int = Field(default=50, ge=1, description="Recent items kept per user.")
    model_path: Path | None = Field(
        default=None,
        description="Checkpoint the worker scores with (a run folder, whose BEST epoch is used, or "
        "one epoch folder); unset = the co-occurrence baseline learned from the stream.",
    )
    model_store: Path = Field(
        default_factory=_under_home("models"),
        description="Model store: one folder per published version (verified by a SHA-256 "
        "manifest) and a CURRENT pointer; `intentstream model list|publish|rollback` use it.",
    )
    model_name: str = Field(
        default="intentstream-scorer",
        min_length=1,
        description="Name of the served model: the key of its announcements on the models topic.",
    )
    text_search: bool = Field(
        default=True,
        description="Load the multilingual text encoder and encode the catalogue's titles, for "
        "search ranking and cold-start items (about 2 s and 70 MB per worker); the "
        "catalogue's ids and categories are followed either way.",
    )
    # Bounds on per-event work
    max_query_chars: int = Field(
        default=256,
        ge=1,
        description="Characters (NFKC) of a search query that are encoded; the rest is "
        "ignored, so a long query costs no more than this (docs/performance.md).",
    )
    max_query_chars_per_batch: int = Field(
        default=32_768,
        ge=1,
        description="Query characters (NFKC) encoded per batch, all queries together: past it "
        "the longest queries are cut to a common length and short ones stay whole.",
    )
    max_title_chars: int = Field(
        default=256, ge=1, description="Characters (NFKC) of an item title that are encoded."
    )
    max_catalogue_items: int = Field(
        default=1_000_000,
        ge=1,
        description="Most items a worker's catalogue holds (2 KiB each); new items past it "
        "are refused with a warning until tombstones make room.",
    )
    scoring_threads: int = Field(
        default=1, ge=1, description="Torch threads per worker for scoring (one per core is best)."
    )
    full_ranking: bool = Field(
        default=False,
        description="Rank every item of a trained model instead of a few hundred candidates "
        "a shopper (slower on a CPU; for a GPU, or to compare).",
    )
    metrics_port: int = Field(
        default=9400,
        ge=0,
        le=65535,
        description="Port of a worker's Prometheus metrics (/metrics); 0 = any free port "
        "(written to the ready file). Give each worker on one host its own.",
    )
    learn_metrics_port: int = Field(
        default=9401,
        ge=0,
        le=65535,
        description="Port of the learner's Prometheus metrics; 0 = any free port.",
    )
    worker_loglevel: str = Field(default="warning", description="Log level of worker processes.")
    replication_factor: int = Field(
        default=1,
        ge=1,
        description="Replicas of every topic intentstream or Faust creates; at most the "
        "number of brokers (3 on a production cluster).",
    )
    metrics_host: str = Field(
        default="127.0.0.1",
        description="Address the worker's and the learner's Prometheus metrics bind; "
        "0.0.0.0 = every interface (in a container, so that Prometheus can scrape them).",
    )
    ready_file: Path | None = Field(
        default=None,
        description="File the worker creates once it is assigned and recovered (readiness probe).",
    )
    data_dir: Path | None = Field(
        default=None,
        description="Folder of the converted public data sets (`intentstream data convert`; "
        "relative: to the project root); unset: the demo replays the bundled RetailRocket "
        "sample.",
    )

    @field_validator("data_dir")
    @classmethod
    def _data_dir_from_project_root(cls, value: Path | None) -> Path | None:
        # The same folder whichever directory a command runs in.
        return None if value is None else PROJECT_ROOT / value

    @field_validator("home")
    @classmethod
    def _home_expanded(cls, value: Path) -> Path:
        # As the brokers take it, so that the key files and model store under it agree.
        return value.expanduser()

    @field_validator("kafka")
    @classmethod
    def _strip_bootstrap(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None
