"""
Push stats per token (the console's Push tab): requests, error replies and the last request time of
every minted token, counted in memory per one-minute bucket and added to the store every few seconds,
so the request path never waits on a database write and instances sharing a store add up.

What counts: every reply a token route sends once the presented token resolved — accepted, replayed,
and every refusal after that (bad signature, template no longer allowed, rate limit, bad body, too
large, unsupported type, idempotency conflict, sink unavailable, internal error). An error is a reply
of status 400 or more; a replayed idempotent reply is a request but never an error (it repeats the
first, successful answer). A token that does not resolve has no stats: its 401 appears only in the
metrics and the status page's recent errors.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from aisoc_inboxd.episode import FailureLog
from aisoc_inboxd.periodic import Periodic
from aisoc_inboxd.store import PushBucket, Store, TokenRecord
#: buckets are kept a little longer than the window, then swept (each token's newest is kept)
RETENTION = 25 * 3600.0
#: width of a stored bucket, in seconds
BUCKET = 60.0

_log = Logger()


def is_error(outcome: str, status: int) -> bool:
    """
    Whether a reply counts against a token's error rate.
    """
    return status >= 400 and outcome != "replay"


@dataclass
class _Counts:
    template_id: str
    requests: int = 0
    errors: int = 0
    last_seen: float = 0.0

    def add(self, other: _Counts) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.last_seen = max(self.last_seen, other.last_seen)


#: (tenant, fingerprint, bucket start) → counts not yet in the store
_Pending = dict[tuple[str, str, float], _Counts]


class PushStatsRecorder(MultiService):
    """
    Counts token-route replies (L{replied}, an C{OnReply} observer of the routes) and adds them to
    the store every C{interval} seconds, one transaction per tenant; sweeps old buckets every
    C{sweep_interval} seconds. A flush never fails: counts a failed write could not store are kept
    for the next one (those older than L{RETENTION} are dropped); failing flushes are logged as one
    episode (L{FailureLog}), not one line each.

    @param drained: fires once requests still in flight at shutdown have replied (fails when they
        take too long). Stopping flushes at once, and once more when it fires, which is before the
        daemon stops the store: shutdown never waits on push stats.
    """

    name = "push-stats"

    def __init__(self, store: Store, clock: IReactorTime, drained: Callable[[], Deferred[None]],
                 interval: float = 5.0, sweep_interval: float = 600.0) -> None:
        super().__init__()
        self._store = store
        self._clock = clock
        self._drained = drained
        self._interval = interval
        self._pending: _Pending = {}
        self._failures = FailureLog(clock, _log, "push stats: storing counts")
        Periodic("push-stats-flush", self.flush, clock, interval, now=False).setServiceParent(self)
        Periodic("push-stats-sweep", lambda: store.sweep_push_stats(clock.seconds() - RETENTION), clock,
                 sweep_interval, now=False).setServiceParent(self)

    def replied(self, route: str, token: TokenRecord | None, outcome: str, status: int,
                error: str | None = None) -> None:
        """
        Count one reply of a request that presented C{token} (C{None}: it did not resolve).
        """
        if token is None:
            return
        now = self._clock.seconds()
        key = (token.tenant_id, token.fingerprint, now - now % BUCKET)
        counts = self._pending.get(key)
        if counts is None:  # not setdefault: that would build a _Counts on every request
            counts = self._pending[key] = _Counts(token.template_id)
        counts.requests += 1
        counts.errors += is_error(outcome, status)
        counts.last_seen = now

    def stopService(self) -> Deferred[None]:
        self._drained().addCallbacks(lambda _: self.flush(), lambda _: None)
        d: Deferred[Any] = super().stopService()
        return d.addCallback(lambda _: self.flush())

    def flush(self) -> Deferred[None]:
        """
        Add what was counted since the last flush to the store; never fails.
        """
        return Deferred.fromCoroutine(self._flush())

    async def _flush(self) -> None:
        pending, self._pending = self._pending, {}
        by_tenant: dict[str, _Pending] = {}
        for key, counts in pending.items():
            by_tenant.setdefault(key[0], {})[key] = counts
        # every tenant's write starts now, before the store could begin to close
        stored = await gatherResults([Deferred.fromCoroutine(self._add(tenant_id, counted))
                                      for tenant_id, counted in by_tenant.items()])
        if stored and all(stored):
            self._failures.worked()

    async def _add(self, tenant_id: str, counted: _Pending) -> bool:
        """
        Add one tenant's counts to the store; whether it took them (if not, they are kept).
        """
        buckets = [PushBucket(fingerprint, c.template_id, start, c.requests, c.errors, c.last_seen)
                   for (_, fingerprint, start), c in counted.items()]
        try:
            await self._store.add_push_stats(tenant_id, buckets)
            return True
        except Exception:
            self._failures.failed(Failure(), f"in {self._interval:g}s (the counts are kept)")
            self._keep(counted)
            return False

    def _keep(self, counted: _Pending) -> None:
        oldest = self._clock.seconds() - RETENTION
        for key, counts in counted.items():
            if key[2] >= oldest:
                self._pending.setdefault(key, _Counts(counts.template_id)).add(counts)
