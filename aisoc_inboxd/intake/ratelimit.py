"""
Per-tenant rate limiting: a token bucket per tenant, refilled continuously on the injected clock.

A tenant may burst up to its whole per-minute allowance at once and is then held to the steady rate.
Buckets of idle tenants are dropped once full again, so memory follows the number of active tenants.

With C{workers: N} the daemon's L{RateLimiter} stays the one bucket per tenant; each worker process
holds a L{LeasedRateLimiter} that leases a few tokens at a time from it over the control channel.
Both are an L{Admission}: C{await limiter.take(tenant_id)}.
"""
from __future__ import annotations

import itertools
import math
from collections import OrderedDict
from typing import Callable, Protocol

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

_log = Logger()


class Admission(Protocol):
    """
    What L{aisoc_inboxd.intake.intake.Intake} admits requests through.
    """

    async def take(self, tenant_id: str) -> float:
        """
        Take one request from the tenant's rate limit: 0 when allowed, otherwise the seconds until
        one request will be allowed again (for C{Retry-After}).
        """


class RateLimiter:
    def __init__(self, clock: IReactorTime, per_minute: float, max_tenants: int = 100_000,
                 burst: float | None = None) -> None:
        """
        @param burst: requests a full bucket holds; by default the whole per-minute allowance.
        @param max_tenants: buckets kept (any key: a tenant, a client address); the oldest go first.
        """
        self._clock = clock
        self._burst = burst
        self._max_tenants = max_tenants
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self.set_rate(per_minute)

    def set_rate(self, per_minute: float) -> None:
        """
        Hold every tenant to C{per_minute} from now on (a reload): each bucket keeps what it holds,
        up to the new allowance, and refills at the new rate.
        """
        self._capacity = float(per_minute if self._burst is None else self._burst)
        self._per_second = per_minute / 60.0

    def acquire(self, tenant_id: str) -> float:
        """
        Take one request from the tenant's bucket. Returns 0 when allowed, otherwise the seconds
        until one request will be allowed again (for C{Retry-After}).
        """
        return self.lease(tenant_id, 1)[1]

    async def take(self, tenant_id: str) -> float:
        """
        L{acquire} as an L{Admission}; it never suspends, so awaiting it costs no reactor turn.
        """
        return self.acquire(tenant_id)

    def lease(self, tenant_id: str, want: int) -> tuple[int, float]:
        """
        Take up to C{want} (at least 1) whole requests from the tenant's bucket now. Returns
        C{(granted, wait)}: C{wait} is 0 unless nothing was granted, then the seconds until one
        request will be allowed again.
        """
        if want < 1:
            raise ValueError(f"a lease wants at least one request, not {want}")
        now = self._clock.seconds()
        tokens, stamp = self._buckets.pop(tenant_id, (self._capacity, now))
        tokens = min(self._capacity, tokens + (now - stamp) * self._per_second)
        granted = min(want, int(tokens))
        tokens -= granted
        wait = 0.0 if granted else (1.0 - tokens) / self._per_second
        self._buckets[tenant_id] = (tokens, now)
        self._evict(now)
        return granted, wait

    def refund(self, tenant_id: str) -> None:
        """
        Give back one request taken from the bucket (never past a full bucket).
        """
        bucket = self._buckets.get(tenant_id)
        if bucket is not None:
            tokens, stamp = bucket
            self._buckets[tenant_id] = (min(self._capacity, tokens + 1), stamp)

    def _evict(self, now: float) -> None:
        while len(self._buckets) > self._max_tenants:
            self._buckets.popitem(last=False)
        # the oldest entry, if refilled by now, is indistinguishable from a fresh bucket (the two
        # oldest are copied out, not every bucket: this runs per request)
        for tenant_id, (tokens, stamp) in list(itertools.islice(self._buckets.items(), 2)):
            if tokens + (now - stamp) * self._per_second >= self._capacity:
                del self._buckets[tenant_id]


#: how long a worker may keep leased requests it has not used yet, in seconds
LEASE_LIFETIME = 1.0


class LeasedRateLimiter:
    """
    A worker process's share of the daemon's L{RateLimiter}: it leases a few requests of a tenant
    at a time from the daemon's one bucket (C{ask} is the daemon's L{RateLimiter.lease} across the
    control channel) and admits from them, so the tenant's total over all processes stays within
    its limit, while a tenant whose traffic all lands on this worker still gets all of it.

    A lease is a tenth of a second of the steady rate (at least one request). Leased requests that
    are not used within L{LEASE_LIFETIME} are dropped, never returned: they are already gone from
    the daemon's bucket, so keeping them would not admit more than the limit at once, but a worker
    whose tenant's connections have moved elsewhere would hold allowance the other processes cannot
    use, and after the daemon's bucket refilled it could spend the old lease on top of a full new
    burst. Expiry bounds both to one lease per worker.

    While a lease is asked for, the tenant's other requests wait for that same answer instead of
    asking again. When the daemon refuses (its bucket is empty) the worker refuses the tenant for
    the C{wait} the daemon gave, without asking: nothing can refill the bucket sooner. When C{ask}
    fails the daemon is gone (the worker is shutting down): the worker then limits each tenant on
    its own, with a local L{RateLimiter} at the full limit.
    """

    def __init__(self, clock: IReactorTime, per_minute: int, ask: Callable[[str, int], Deferred[tuple[int, float]]],
                 max_tenants: int = 100_000) -> None:
        self._clock = clock
        self._ask = ask
        self._max_tenants = max_tenants
        # tenant → (leased requests left, until when): usable until then; with none left, the
        # daemon's bucket is empty until then (entries are never kept with none left otherwise)
        self._purses: OrderedDict[str, tuple[int, float]] = OrderedDict()
        # tenant → the requests waiting for its one outstanding ask
        self._waiting: dict[str, list[Deferred[float]]] = {}
        self._local: RateLimiter | None = None
        self.set_rate(per_minute)

    def set_rate(self, per_minute: int) -> None:
        """
        The limit changed (a reload, applied by the daemon's limiter too): lease in steps of the new
        rate; a lease already held lapses as usual.
        """
        self._per_minute = per_minute
        self._lease_size = max(1, math.ceil(per_minute / 600))
        if self._local is not None:
            self._local.set_rate(per_minute)

    async def take(self, tenant_id: str) -> float:
        """
        Take one request of the tenant's limit: 0 when allowed, otherwise the seconds until one
        request will be allowed again. Without suspending when a lease has requests left.
        """
        if self._local is not None:
            return self._local.acquire(tenant_id)
        now = self._clock.seconds()
        self._expire(now)
        left, until = self._purses.get(tenant_id, (0, now))
        if now < until:
            if not left:
                return until - now
            if left > 1:
                self._purses[tenant_id] = (left - 1, until)
            else:
                del self._purses[tenant_id]
            return 0.0
        waiter: Deferred[float] = Deferred()
        queue = self._waiting.setdefault(tenant_id, [])
        queue.append(waiter)
        if len(queue) == 1:
            self._lease(tenant_id)
        return await waiter

    def _expire(self, now: float) -> None:
        while len(self._purses) > self._max_tenants:
            self._purses.popitem(last=False)
        while self._purses:
            tenant_id, (_, until) = next(iter(self._purses.items()))
            if until > now:
                break
            del self._purses[tenant_id]

    def _lease(self, tenant_id: str) -> None:
        want = max(self._lease_size, len(self._waiting[tenant_id]))
        d = maybeDeferred(self._ask, tenant_id, want)
        d.addCallbacks(self._leased, self._unreachable, callbackArgs=(tenant_id,), errbackArgs=(tenant_id,))

    def _leased(self, answer: tuple[int, float], tenant_id: str) -> None:
        granted, wait = answer
        now = self._clock.seconds()
        queue = [waiter for waiter in self._waiting.pop(tenant_id) if not waiter.called]
        admitted, rest = queue[:granted], queue[granted:]
        self._purses.pop(tenant_id, None)
        if granted > len(admitted):
            self._purses[tenant_id] = (granted - len(admitted), now + LEASE_LIFETIME)
        elif not granted:
            wait = max(wait, 0.001)  # 0 would admit
            self._purses[tenant_id] = (0, now + wait)
        more = bool(granted and rest)
        if more:  # the daemon may have more: these wait for the next answer, as do requests arriving meanwhile
            self._waiting[tenant_id] = rest
            rest = []
        for waiter in admitted:
            waiter.callback(0.0)
        for waiter in rest:
            waiter.callback(wait)
        if more:
            self._lease(tenant_id)

    def _unreachable(self, failure: Failure, tenant_id: str) -> None:
        if self._local is None:
            _log.warn("the daemon's rate limit cannot be reached ({error}); this worker now limits each tenant "
                      "on its own, at the full limit", error=failure.type.__name__)
            self._local = RateLimiter(self._clock, self._per_minute)
            self._purses.clear()
        local = self._local
        for waiter in self._waiting.pop(tenant_id):
            if not waiter.called:
                waiter.callback(local.acquire(tenant_id))


def retry_seconds(wait: float) -> int:
    """
    A wait as the whole seconds a sender is told to wait (at least one).
    """
    return max(1, math.ceil(wait))
