"""The order a batch's records reach the broker in (each wave acknowledged before the next)."""

from __future__ import annotations

import pytest

from streams.pipeline.records import OutputRecord
from streams.pipeline.result import BatchResult
from streams.pipeline.working_set import StateChanges
from streams.worker.handler import _waves

CHANGELOGS = ("users-changelog", "keys-changelog", "releases-changelog")


@pytest.mark.parametrize("isolate_tails", [False, True])
def test_spend_records_go_with_the_recommendations_before_the_changelog(
    isolate_tails: bool,
) -> None:
    """A charge is durable before the state that holds it: no accepted charge is lost."""
    rec = OutputRecord(topic="recs", key=b"u1", value=b"{}")
    spend = OutputRecord(topic="spend", key=b"c1", value=b"{}")
    result = BatchResult(
        recommendations=[rec],
        ad_spend=[spend],
        changes=StateChanges(states={b"p1": (0, b"sealed")}),
        release_marks={0: 60.0},
    )
    marks, outputs, *changelog = _waves(result, CHANGELOGS, isolate_tails=isolate_tails)
    assert [r.topic for r in marks] == ["releases-changelog"]
    assert outputs == [rec, spend]
    assert {r.topic for wave in changelog for r in wave} == {"users-changelog"}
