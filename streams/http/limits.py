"""Per-client rate limits: a token bucket per client address, in a bounded map."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable

from streams.http.errors import RateLimited

#: Most client addresses with a bucket; the least recently seen is dropped (it refills anyway).
MAX_CLIENTS = 10_000


class RateLimiter:
    """``rate`` requests a second per client, in bursts of up to ``burst``.

    Each client's bucket holds up to ``burst`` tokens and gains ``rate`` a second; a
    request takes one, and a client with none is refused with the whole seconds
    until it has one again.

    Examples:
        >>> now = [0.0]
        >>> limit = RateLimiter(rate=1.0, burst=2, clock=lambda: now[0])
        >>> limit("a"); limit("a")
        >>> try:
        ...     limit("a")
        ... except RateLimited as refused:
        ...     print(refused.retry_after)
        1
        >>> now[0] = 1.0; limit("a")
    """

    def __init__(
        self,
        *,
        rate: float,
        burst: int,
        clock: Callable[[], float],
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        if rate <= 0 or burst < 1 or max_clients < 1:
            raise ValueError("rate must be > 0, burst and max_clients >= 1")
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._max_clients = max_clients
        #: client -> (tokens, when they were counted)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __call__(self, client: str) -> None:
        """Take one token of ``client``'s bucket.

        Raises:
            RateLimited: the bucket is empty; ``retry_after`` says in how many seconds
                it holds a token again.
        """
        now = self._clock()
        buckets = self._buckets
        tokens, then = buckets.pop(client, (self._burst, now))
        tokens = min(self._burst, tokens + (now - then) * self._rate)
        if tokens < 1.0:
            buckets[client] = (tokens, now)
            wait = math.ceil((1.0 - tokens) / self._rate)
            raise RateLimited("too many requests from this client", retry_after=max(1, wait))
        buckets[client] = (tokens - 1.0, now)
        if len(buckets) > self._max_clients:
            buckets.popitem(last=False)
