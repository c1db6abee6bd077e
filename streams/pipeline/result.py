"""What one batch asks its caller to do: the pipeline's whole output, written by nobody else."""

from __future__ import annotations

from dataclasses import dataclass, field

from streams.metrics.stats import BatchStats
from streams.pipeline.monitor import ProbationFailure
from streams.pipeline.records import OutputRecord
from streams.pipeline.working_set import StateChanges


@dataclass(slots=True)
class BatchResult:
    """Everything one batch asks its caller to do.

    ``changes`` holds the sealed user states and wrapped keys to write (None =
    tombstone), each with the partition of the record that changed it.
    """

    recommendations: list[OutputRecord] = field(default_factory=list)
    dead_letters: list[OutputRecord] = field(default_factory=list)
    audit: list[OutputRecord] = field(default_factory=list)
    #: Spend per campaign and day on the spend topic, keyed by campaign id; sent with
    #: the recommendations, so no accepted charge is lost.
    ad_spend: list[OutputRecord] = field(default_factory=list)
    changes: StateChanges = field(default_factory=StateChanges)
    #: Input partition -> start of the first window not yet released; made durable first.
    release_marks: dict[int, float] = field(default_factory=dict)
    probation_failures: list[ProbationFailure] = field(default_factory=list)
    stats: BatchStats = field(default_factory=BatchStats)
    #: Pseudonym -> (partition, body of the user's last recommendation in the batch,
    #: without ``user_id``); body None: the user was erased and has no list.
    latest: dict[bytes, tuple[int, bytes | None]] = field(default_factory=dict)
