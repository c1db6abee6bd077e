"""The watermark: the least event time over the partitions still delivering."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.pipeline.watermark import Watermark

IDLE = 30.0
#: (partition, event time, wall-clock step before it)
OBSERVATIONS = st.lists(
    st.tuples(
        st.integers(0, 4),
        st.floats(0, 1e4, allow_nan=False),
        st.sampled_from([0.0, 0.0, 5.0, 40.0]),
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(OBSERVATIONS)
def test_the_watermark_is_the_least_time_over_active_partitions(
    observations: list[tuple[int, float, float]],
) -> None:
    """The cached minimum equals the minimum recomputed from scratch after every event."""
    mark, times, seen, wall = Watermark(idle_seconds=IDLE), {}, {}, 0.0
    for partition, event_time, step in observations:
        wall += step
        times[partition] = max(times.get(partition, event_time), event_time)
        seen[partition] = wall
        expected = min(t for p, t in times.items() if wall - seen[p] <= IDLE)
        assert mark.observe(partition, event_time, wall=wall) == expected
