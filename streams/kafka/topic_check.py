"""Checks a cluster's existing topics against what the product needs (``intentstream topics
--check``; docs/operating.md, "Topics on a shop's cluster").
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient
from kafka.errors import for_code

from streams.errors import BrokerError
from streams.kafka.admin import ENFORCED_CONFIGS, admin_client, changelog_topic, topic_specs
from streams.kafka.key_check import key_check_topic
from streams.kafka.tables import KEY_TABLE, RELEASES_TABLE, USER_TABLE
from streams.settings import Settings

#: Metadata error of a topic that does not exist.
_UNKNOWN_TOPIC = 3
#: Seconds (one a try) a missing topic is looked for again before it counts as missing.
MISSING_RETRIES = 3

#: Why a topic needs exactly so many partitions, by what it is partitioned with.
CO_PARTITIONED = (
    "keys hash to partitions: the privacy requests and the tables' changelogs must have as "
    "many partitions as the events (INTENTSTREAM_PARTITIONS), or requests and state miss "
    "their user's worker"
)
SINGLE_PARTITION = "one partition keeps its records in one order, which readers rely on"
#: Why a topic config has the value it needs, by config.
CONFIG_REASONS = {
    "cleanup.policy": "compact keeps each key's latest record (the catalogue, the tables' "
    "state); delete drops raw-id records after their retention (privacy: a compacted "
    "raw-id topic would keep a user's last record for ever)",
    "retention.ms": "raw user ids stay at most this long "
    "(INTENTSTREAM_RAW_TOPIC_RETENTION_SECONDS); the state's expiry assumes it",
    "segment.ms": "Kafka deletes or compacts whole segments: records stay at most retention.ms + "
    "segment.ms, and erased users' keys leave user_keys within seconds",
    "message.timestamp.type": "the broker stamps events and erasure requests, so an erasure "
    "covers exactly the events before it (docs/privacy.md#erasure)",
    "max.message.bytes": "a dead letter holds the original record, sealed, and may be larger "
    "than the input limit",
    "min.cleanable.dirty.ratio": "compact user_keys soon after a key is destroyed "
    "(crypto-shredding, docs/privacy.md#erasure)",
    "min.compaction.lag.ms": "compact user_keys soon after a key is destroyed",
    "delete.retention.ms": "tombstones of erased users' keys leave user_keys within seconds",
}
MODELS_REASON = (
    "a starting worker reads every announcement to find the version to serve: kept for good"
)
ADS_SPEND_REASONS = {
    "retention.ms": "a starting worker reads the current and the previous day's spend "
    "(pacing, the day's report); spend records hold no user ids and need not stay longer",
    "cleanup.policy": "each spend record is one worker's delta: compaction would keep one per "
    "campaign and lose the rest of its day's spend",
}
REPLICATION_REASON = (
    "fewer copies than INTENTSTREAM_REPLICATION_FACTOR: a broker lost can lose acknowledged records"
)


@dataclass(frozen=True, slots=True)
class TopicNeed:
    """What the product needs of one topic."""

    name: str
    #: Exactly this many partitions, or ``None``: any number.
    partitions: int | None
    #: At least this many replicas of each partition.
    replication: int
    #: Topic configs that must have exactly these values.
    configs: Mapping[str, str] = field(default_factory=dict)
    #: Configs ``intentstream topics`` sets on an existing topic (``ENFORCED_CONFIGS``).
    enforced: frozenset[str] = frozenset()
    #: Why a config has its value, where this topic's reason differs from CONFIG_REASONS'.
    reasons: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TopicState:
    """What a topic is on the cluster: its partitions, fewest replicas of one, effective configs."""

    partitions: int
    replication: int
    configs: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class TopicDifference:
    """One way an existing topic (or a missing one) differs from what the product needs.

    ``setting`` is ``"topic"`` (missing), ``"partitions"``, ``"replication.factor"`` or a
    topic config; ``found`` is ``"missing"`` for a missing topic. ``fixed_by_topics``:
    ``intentstream topics`` repairs it (it creates missing topics and, on Apache Kafka,
    sets ``ENFORCED_CONFIGS``); the rest needs the cluster's own tools.

    Examples:
        >>> print(TopicDifference("shop.events", "partitions", "8", "4", "why", False))
        shop.events: partitions is 4, needs 8
    """

    topic: str
    setting: str
    needed: str
    found: str
    why: str
    fixed_by_topics: bool

    def __str__(self) -> str:
        return f"{self.topic}: {self.setting} is {self.found}, needs {self.needed}"


def topic_needs(settings: Settings) -> list[TopicNeed]:
    """What each topic of :func:`topic_specs` needs, to be compared with the cluster.

    Partitions are exact where records must meet their user's state (the inputs and
    the changelogs) or keep one order (model announcements, the key check); other
    topics may have any number. Configs are exactly those a created topic gets; a
    topic that sets ``retention.ms`` (raw user ids) must also not be compacted.
    """
    exact = {
        settings.events_topic,
        settings.privacy_requests_topic,
        *(changelog_topic(settings, t) for t in (USER_TABLE, KEY_TABLE, RELEASES_TABLE)),
    }
    single = {settings.models_topic, key_check_topic(settings)}
    enforced = frozenset(ENFORCED_CONFIGS) if settings.broker_kind == "kafka" else frozenset()
    own_reasons = {
        settings.models_topic: {"retention.ms": MODELS_REASON},
        settings.ads_spend_topic: ADS_SPEND_REASONS,
    }
    needs = []
    for spec in topic_specs(settings):
        configs = dict(spec.topic_configs)
        if "retention.ms" in configs:
            configs.setdefault("cleanup.policy", "delete")
        parts = spec.num_partitions if spec.name in exact | single else None
        reasons = own_reasons.get(spec.name, {})
        needs.append(
            TopicNeed(spec.name, parts, spec.replication_factor, configs, enforced, reasons)
        )
    return needs


def compare_topics(
    needs: Sequence[TopicNeed], found: Mapping[str, TopicState]
) -> list[TopicDifference]:
    """Every way the topics ``found`` on the cluster differ from ``needs`` (a pure function).

    Examples:
        >>> need = TopicNeed("t", 2, 1, {"cleanup.policy": "delete"})
        >>> compacted = TopicState(2, 1, {"cleanup.policy": "compact"})
        >>> [str(d) for d in compare_topics([need], {"t": compacted})]
        ['t: cleanup.policy is compact, needs delete']
        >>> [str(d) for d in compare_topics([need], {})]
        ['t: topic is missing, needs 2 partition(s)']
    """
    out = []
    for need in needs:
        state = found.get(need.name)
        if state is None:
            wanted = f"{need.partitions} partition(s)" if need.partitions else "to exist"
            why = "intentstream reads or writes it; `intentstream topics` creates it"
            out.append(TopicDifference(need.name, "topic", wanted, "missing", why, True))
            continue
        if need.partitions is not None and state.partitions != need.partitions:
            why = SINGLE_PARTITION if need.partitions == 1 else CO_PARTITIONED
            out.append(_difference(need, "partitions", need.partitions, state.partitions, why))
        if state.replication < need.replication:
            out.append(
                _difference(
                    need,
                    "replication.factor",
                    need.replication,
                    state.replication,
                    REPLICATION_REASON,
                )
            )
        for name, value in need.configs.items():
            actual = state.configs.get(name)
            if actual is None or not _same(actual, value):
                why = need.reasons.get(name, CONFIG_REASONS[name])
                difference = _difference(need, name, value, actual or "unset", why)
                out.append(difference)
    return out


def _difference(
    need: TopicNeed, setting: str, needed: object, found: object, why: str
) -> TopicDifference:
    fixed = setting in need.enforced
    return TopicDifference(need.name, setting, str(needed), str(found), why, fixed)


def _same(actual: str, needed: str) -> bool:
    """Equal values, numbers compared as numbers (``0.01`` = ``0.010``)."""
    try:
        return float(actual) == float(needed)
    except ValueError:
        return actual == needed


def check_topics(settings: Settings) -> list[TopicDifference]:
    """How the cluster's topics differ from what the product needs; empty when they do not.

    Reads each topic's partitions, replicas and effective configs (DescribeConfigs,
    so broker defaults count) and compares them with :func:`topic_needs`; changes
    nothing. ``intentstream topics`` fixes the differences marked
    ``fixed_by_topics``; docs/operating.md#topics-on-a-shops-cluster says how to fix
    the others.

    Raises:
        BrokerError: The cluster could not be reached, refused the login, or refused to
            describe a topic (the user needs Describe and DescribeConfigs on the topics).
    """
    needs = topic_needs(settings)
    with admin_client(settings) as admin:
        found = _describe(admin, [need.name for need in needs])
    return compare_topics(needs, found)


def _describe(admin: KafkaAdminClient, names: list[str]) -> dict[str, TopicState]:
    """The state of each topic of ``names`` that exists."""
    shapes = _shapes(admin, names)
    for _ in range(MISSING_RETRIES):
        missing = [name for name in names if name not in shapes]
        if not missing:
            break
        # A topic created a moment ago can be missing from the answering broker's
        # metadata for a second or two (seen on Apache Kafka 4.1 right after creation).
        time.sleep(1.0)
        shapes |= _shapes(admin, missing)
    if not shapes:
        return {}
    configs: dict[str, dict[str, str]] = {}
    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in shapes]
    for response in admin.describe_configs(resources):
        for code, message, _, name, entries in response.resources:
            if code:
                raise BrokerError(f"cannot read the configs of topic {name}: {message or code}")
            configs[name] = {entry[0]: entry[1] for entry in entries if entry[1] is not None}
    return {
        name: TopicState(parts, copies, configs.get(name, {}))
        for name, (parts, copies) in shapes.items()
    }


def _shapes(admin: KafkaAdminClient, names: list[str]) -> dict[str, tuple[int, int]]:
    """(partitions, fewest replicas of one) of each topic of ``names`` that exists."""
    shapes = {}
    for topic in admin.describe_topics(names):
        code, name = topic["error_code"], topic["topic"]
        if code == _UNKNOWN_TOPIC:
            continue
        if code:
            raise BrokerError(f"cannot describe topic {name}: {for_code(code).__name__}")
        replicas = [len(p["replicas"]) for p in topic["partitions"]]
        shapes[name] = (len(replicas), min(replicas, default=0))
    return shapes
