"""
Per-tenant rate limiting: a token bucket per tenant, refilled continuously on the injected clock.

A tenant may burst up to its whole per-minute allowance at once and is then held to the steady rate.
Buckets of idle tenants are dropped once full again, so memory follows the number of active tenants.
"""
from __future__ import annotations

import math
from collections import OrderedDict

from twisted.internet.interfaces import IReactorTime


class RateLimiter:
    def __init__(self, clock: IReactorTime, per_minute: int, max_tenants: int = 100_000) -> None:
        self._clock = clock
        self._capacity = float(per_minute)
        self._per_second = per_minute / 60.0
        self._max_tenants = max_tenants
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def acquire(self, tenant_id: str) -> float:
        """
        Take one request from the tenant's bucket. Returns 0 when allowed, otherwise the seconds
        until one request will be allowed again (for C{Retry-After}).
        """
        now = self._clock.seconds()
        tokens, stamp = self._buckets.pop(tenant_id, (self._capacity, now))
        tokens = min(self._capacity, tokens + (now - stamp) * self._per_second)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self._per_second
        self._buckets[tenant_id] = (tokens, now)
        self._evict(now)
        return wait

    def _evict(self, now: float) -> None:
        while len(self._buckets) > self._max_tenants:
            self._buckets.popitem(last=False)
        # the oldest entry, if refilled by now, is indistinguishable from a fresh bucket
        for tenant_id, (tokens, stamp) in list(self._buckets.items())[:2]:
            if tokens + (now - stamp) * self._per_second >= self._capacity:
                del self._buckets[tenant_id]


def retry_after(wait: float) -> str:
    return str(max(1, math.ceil(wait)))
