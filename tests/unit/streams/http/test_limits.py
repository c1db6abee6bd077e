"""Token buckets per client: bursts, refill, Retry-After, a bounded number of clients."""

from __future__ import annotations

import pytest

from streams.http.errors import RateLimited
from streams.http.limits import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def allowed(limit: RateLimiter, client: str, times: int) -> int:
    passed = 0
    for _ in range(times):
        try:
            limit(client)
            passed += 1
        except RateLimited:
            pass
    return passed


def test_a_burst_then_the_rate() -> None:
    clock = Clock()
    limit = RateLimiter(rate=10.0, burst=5, clock=clock)
    assert allowed(limit, "a", 20) == 5
    clock.now = 1.0  # ten more tokens, but the bucket holds five
    assert allowed(limit, "a", 20) == 5
    clock.now = 1.3
    assert allowed(limit, "a", 20) == 3


def test_clients_have_their_own_buckets() -> None:
    limit = RateLimiter(rate=1.0, burst=1, clock=Clock())
    assert allowed(limit, "a", 3) == 1
    assert allowed(limit, "b", 3) == 1


@pytest.mark.parametrize(("rate", "retry_after"), [(0.1, 10), (0.4, 3), (1.0, 1), (50.0, 1)])
def test_retry_after_is_the_whole_seconds_until_a_token(rate: float, retry_after: int) -> None:
    limit = RateLimiter(rate=rate, burst=1, clock=Clock())
    limit("a")
    with pytest.raises(RateLimited) as refused:
        limit("a")
    assert refused.value.retry_after == retry_after


def test_the_clients_remembered_are_bounded() -> None:
    clock = Clock()
    limit = RateLimiter(rate=1.0, burst=1, clock=clock, max_clients=3)
    for client in "abcd":
        limit(client)
    assert len(limit._buckets) == 3
    assert allowed(limit, "a", 1) == 1  # forgotten: a full bucket again
