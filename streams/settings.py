"""The one configuration object of intentstream.

Every entry point builds one :class:`Settings` (environment variables with the
``INTENTSTREAM_`` prefix, then CLI flags on top) and passes it down; nothing
else reads the environment.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger(__name__)

BrokerKind = Literal["tansu", "kafka"]

#: Where local brokers, pid files, logs and generated keys live (outside the repo).
DEFAULT_HOME = Path.home() / ".cache" / "intentstream"

#: The folder holding pyproject.toml, against which a relative ``data_dir`` is resolved.
PROJECT_ROOT = Path(__file__).resolve().parents[1]

#: Default listener port per local broker kind, so both can run side by side.
DEFAULT_PORTS: dict[str, int] = {"tansu": 9092, "kafka": 9192}

#: Prefix of every setting's environment variable.
ENV_PREFIX = "INTENTSTREAM_"


def _under_home(name: str) -> Callable[[dict[str, Any]], Path]:
    """Default of a path setting: ``name`` in the ``home`` folder (``INTENTSTREAM_HOME``)."""
    return lambda data: data.get("home", DEFAULT_HOME) / name


class Settings(BaseSettings):
    """Configuration with one documented default each (see docs/configuration.md)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

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
    learn_update_every: int = Field(
        default=256, ge=1, description="New training sequences between two incremental updates."
    )
    learn_publish_every: int = Field(
        default=5_000, ge=1, description="Training sequences between two published versions."
    )
    learn_publish_seconds: float = Field(
        default=600.0, gt=0, description="Most seconds between two published versions."
    )
    learn_dp_noise_multiplier: float | None = Field(
        default=None,
        gt=0,
        description="Turns on DP-SGD (Opacus) for the learner's updates with this noise "
        "multiplier sigma; unset = plain updates (docs/training.md says what each costs).",
    )
    learn_dp_max_grad_norm: float = Field(
        default=1.0, gt=0, description="DP-SGD clipping norm of one session's gradient."
    )
    learn_dp_delta: float = Field(
        default=1e-6, gt=0, lt=1, description="Delta at which the learner's epsilon is reported."
    )
    learn_dp_epsilon: float = Field(
        default=8.0,
        gt=0,
        description="The lifetime DP-SGD budget per session of a model lineage (every version "
        "learned from one base version, across restarts): once spent, the learner stops "
        "updating and goes on serving.",
    )
    learn_dp_sample_rate: float = Field(
        default=0.1,
        gt=0,
        le=1,
        description="Probability that a session of the learner's pool is in a DP-SGD step "
        "(Poisson sampling; the accountant's rate).",
    )
    learn_dp_pool_updates: int = Field(
        default=8,
        ge=1,
        description="Updates a session stays in the learner's DP pool after its latest event.",
    )
    learn_dp_epsilon_per_window: float = Field(
        default=1.0,
        gt=0,
        description="Most growth of the lineage's epsilon per learn_dp_window_seconds; steps "
        "beyond it wait for the next window.",
    )
    learn_dp_window_seconds: float = Field(
        default=86_400.0,
        gt=0,
        description="Length of the learner's DP budget window (aligned on the epoch).",
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
    # Broker security and deployment
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT",
        description="How every client talks to the brokers: TLS (SSL), SASL authentication "
        "(SASL_PLAINTEXT), both (SASL_SSL) or neither (docs/operating.md).",
    )
    ssl_cafile: Path | None = Field(
        default=None,
        description="PEM file of the CA that signed the brokers' certificates; unset = the "
        "system's trusted CAs.",
    )
    ssl_certfile: Path | None = Field(
        default=None, description="PEM client certificate for mutual TLS (with ssl_keyfile)."
    )
    ssl_keyfile: Path | None = Field(
        default=None, description="Unencrypted PEM private key of ssl_certfile."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        default="PLAIN", description="SASL mechanism; the SCRAM ones never send the password."
    )
    sasl_username: str | None = Field(default=None, description="SASL user name.")
    sasl_password: SecretStr | None = Field(default=None, description="SASL password.")
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
    # HTTP API (docs/http-api.md)
    http_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="Port of the worker's HTTP API; 0 = any free port (written to the ready "
        "file and advertised to the other workers).",
    )
    http_host: str = Field(
        default="127.0.0.1",
        description="Address the worker's HTTP API binds; 0.0.0.0 = every interface.",
    )
    http_advertised_host: str | None = Field(
        default=None,
        description="Host name the other workers reach this worker's HTTP API at; unset = "
        "http_host, or this machine's host name when http_host is 0.0.0.0 or ::.",
    )
    http_token: SecretStr | None = Field(
        default=None,
        description="Bearer token every /v1 request must carry (at least 16 characters; the "
        "same on every worker); unset = the /v1 routes answer 403 and only the probes and "
        "/openapi.json are served.",
    )
    http_rate_per_second: float = Field(
        default=200.0,
        gt=0,
        description="Requests per second one client address may make to one worker (token "
        "bucket); beyond it the API answers 429 with Retry-After.",
    )
    http_rate_burst: int = Field(
        default=400, ge=1, description="Requests one client address may make at once."
    )
    http_max_body_bytes: int = Field(
        default=16_384, ge=256, description="Largest HTTP request body; larger ones answer 413."
    )
    http_latest_users: int = Field(
        default=100_000,
        ge=1,
        description="Most users whose latest recommendation list a worker keeps in memory for "
        "the HTTP API (about 1 KiB each at top_k 20); the least recently answered go first.",
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

    @model_validator(mode="after")
    def _erasure_outlives_raw_events(self) -> Settings:
        if self.state_ttl_seconds < 2 * self.raw_topic_retention_seconds:
            raise ValueError(
                "state_ttl_seconds must be >= 2 x raw_topic_retention_seconds (a record stays "
                "up to retention.ms + segment.ms): an erased user's marker must outlive every "
                "event of theirs still in the topic"
            )
        return self

    @model_validator(mode="after")
    def _budget_covers_the_shared_counts(self) -> Settings:
        if self.shared_counts_epsilon > self.privacy_epsilon_per_window:
            raise ValueError(
                "shared_counts_epsilon must not exceed privacy_epsilon_per_window, or no user "
                "could ever contribute"
            )
        return self

    @model_validator(mode="after")
    def _security_is_complete(self) -> Settings:
        # Half-configured security must fail at startup, not connect in plain text
        # or hang on a broker that expects a handshake.
        protocol = self.security_protocol
        sasl = protocol in ("SASL_PLAINTEXT", "SASL_SSL")
        password = self.sasl_password.get_secret_value() if self.sasl_password else ""
        if sasl and not (self.sasl_username and password):
            raise ValueError(f"security_protocol {protocol} needs sasl_username and sasl_password")
        if not sasl and (self.sasl_username or password):
            raise ValueError(
                f"sasl_username/sasl_password are set but security_protocol is {protocol}; "
                "use SASL_PLAINTEXT or SASL_SSL"
            )
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("ssl_certfile needs ssl_keyfile, and ssl_keyfile ssl_certfile")
        if protocol not in ("SSL", "SASL_SSL") and (self.ssl_cafile or self.ssl_certfile):
            raise ValueError(
                f"ssl_* files are set but security_protocol {protocol} does not use TLS; "
                "use SSL or SASL_SSL"
            )
        return self

    @field_validator("http_token")
    @classmethod
    def _http_token_is_long(cls, value: SecretStr | None) -> SecretStr | None:
        # A short token can be guessed; 16 characters is the least we accept.
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("http_token must have at least 16 characters")
        return value

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

    @property
    def bootstrap(self) -> str:
        """Bootstrap servers: the configured cluster, else the local broker's address."""
        return self.kafka or f"127.0.0.1:{DEFAULT_PORTS[self.broker_kind]}"

    def as_environment(self) -> dict[str, str]:
        """These settings as ``INTENTSTREAM_*`` variables, to configure a child process."""
        values = self.model_dump(mode="json")
        for name, value in self:
            if isinstance(value, SecretStr):
                values[name] = value.get_secret_value()
        return {
            f"INTENTSTREAM_{name.upper()}": str(value)
            for name, value in values.items()
            if value is not None
        }

    def redacted(self) -> dict[str, object]:
        """The effective configuration with secrets hidden, for the startup log."""
        return self.model_dump(mode="json")


def variable(field: str) -> str:
    """The environment variable of a setting.

    Examples:
        >>> variable("metrics_port")
        'INTENTSTREAM_METRICS_PORT'
    """
    return f"{ENV_PREFIX}{field.upper()}"


def unknown_variables(environ: Mapping[str, str]) -> dict[str, str | None]:
    """``INTENTSTREAM_*`` variables of ``environ`` that are no setting, each with the
    closest setting's variable (None when none is close): a typo is ignored otherwise.

    Examples:
        >>> unknown_variables({"INTENTSTREAM_METRIC_PORT": "1", "INTENTSTREAM_KAFKA": "k:1"})
        {'INTENTSTREAM_METRIC_PORT': 'INTENTSTREAM_METRICS_PORT'}
    """
    fields = list(Settings.model_fields)
    unknown: dict[str, str | None] = {}
    for name in sorted(environ):
        field = name.upper().removeprefix(ENV_PREFIX).lower()
        if name.upper().startswith(ENV_PREFIX) and field not in Settings.model_fields:
            # Compared without the prefix, which every name shares.
            close = difflib.get_close_matches(field, fields, n=1, cutoff=0.7)
            if "bootstrap" in field:  # Kafka's own word for it
                close = ["kafka"]
            unknown[name] = variable(close[0]) if close else None
    return unknown
