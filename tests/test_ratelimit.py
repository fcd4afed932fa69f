"""
The per-tenant rate limit on a fake clock: the daemon's bucket (L{RateLimiter}, its C{lease}) and
the workers' leases from it (L{LeasedRateLimiter}), whose admissions together never exceed it.
"""
from __future__ import annotations

import random
from typing import Any, Callable, Coroutine

import pytest
from twisted.internet.defer import Deferred, ensureDeferred, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs

from aisoc_inboxd.intake.ratelimit import Admission, LeasedRateLimiter, RateLimiter


def now_result(coroutine: Coroutine[Any, Any, float]) -> float:
    """The coroutine's result, which must be there without a reactor turn."""
    d = ensureDeferred(coroutine)
    results: list[float] = []
    d.addBoth(results.append)
    assert results, "take() suspended"
    assert isinstance(results[0], float), results[0]
    return results[0]


def direct(master: RateLimiter) -> Callable[[str, int], Deferred[tuple[int, float]]]:
    """The daemon's lease, answered at once (as if the control channel took no time), counting asks."""
    def ask(tenant_id: str, want: int) -> Deferred[tuple[int, float]]:
        ask.calls.append((tenant_id, want))  # type: ignore[attr-defined]
        return succeed(master.lease(tenant_id, want))
    ask.calls = []  # type: ignore[attr-defined]
    return ask


def most_in_any_window(times: list[float], capacity: float, per_second: float) -> float:
    """
    The largest excess over the token bucket bound of any run of admissions: I{n} admissions from
    I{t_i} to I{t_j} must satisfy n <= capacity + per_second * (t_j - t_i). Returns the largest
    n - per_second * (t_j - t_i), to compare with the capacity.
    """
    worst, lowest = 0.0, float("inf")
    for j, t in enumerate(sorted(times)):
        lowest = min(lowest, j - per_second * t)
        worst = max(worst, j + 1 - per_second * t - lowest)
    return worst


def test_lease_grants_whole_tokens_up_to_want() -> None:
    """A lease takes up to C{want} whole requests at once, with no wait, and only what the bucket holds."""
    clock = Clock()
    master = RateLimiter(clock, 60)
    assert master.lease("t", 25) == (25, 0.0)
    assert master.lease("t", 50) == (35, 0.0)
    granted, wait = master.lease("t", 10)
    assert granted == 0
    assert wait == pytest.approx(1.0)  # one request a second
    clock.advance(2.5)
    assert master.lease("t", 10) == (2, 0.0)  # 2.5 refilled; half a request stays
    granted, wait = master.lease("t", 1)
    assert (granted, wait) == (0, pytest.approx(0.5))
    assert master.lease("other", 1) == (1, 0.0)  # buckets are per tenant


def test_lease_and_acquire_share_one_bucket() -> None:
    """C{acquire} is a lease of one: what leases took, acquire no longer gets, and the refill is the same."""
    clock = Clock()
    master = RateLimiter(clock, 60)
    assert master.lease("t", 59) == (59, 0.0)
    assert master.acquire("t") == 0.0
    assert master.acquire("t") == pytest.approx(1.0)
    clock.advance(1)
    assert master.lease("t", 5) == (1, 0.0)
    with pytest.raises(ValueError):
        master.lease("t", 0)


def test_rate_limiter_take_is_acquire_without_suspending() -> None:
    """The daemon's limiter admits through the same C{take} as a worker's, answering at once."""
    limiter: Admission = RateLimiter(Clock(), 2)
    assert now_result(limiter.take("t")) == 0.0
    assert now_result(limiter.take("t")) == 0.0
    assert now_result(limiter.take("t")) == pytest.approx(30.0)


def test_lease_size_is_a_tenth_of_a_second_of_the_rate() -> None:
    """A worker asks for max(1, ceil(per_minute / 600)) requests and admits from them without asking again."""
    for per_minute, size in [(60, 1), (600, 1), (601, 2), (6000, 10)]:
        clock = Clock()
        ask = direct(RateLimiter(clock, per_minute))
        worker = LeasedRateLimiter(clock, per_minute, ask)
        for _ in range(size):
            assert now_result(worker.take("t")) == 0.0
        assert ask.calls == [("t", size)], per_minute  # type: ignore[attr-defined]
        assert now_result(worker.take("t")) == 0.0
        assert len(ask.calls) == 2  # type: ignore[attr-defined]


def test_a_new_rate_keeps_what_a_bucket_holds_up_to_the_new_limit() -> None:
    """A reload's C{set_rate}: a lower limit cuts a full bucket down to it, a higher one refills at the new
    rate up to the new capacity; a worker leases in steps of the new rate."""
    clock = Clock()
    master = RateLimiter(clock, 60)
    assert master.lease("full", 10) == (10, 0.0)
    master.set_rate(30)
    assert master.lease("full", 60) == (30, 0.0)  # 50 held, 30 allowed
    assert master.lease("fresh", 60) == (30, 0.0)
    master.set_rate(600)
    clock.advance(1)
    assert master.lease("full", 600) == (10, 0.0)  # ten a second now
    assert master.lease("fresh", 600) == (10, 0.0)
    clock.advance(60)
    assert master.lease("fresh", 1000) == (600, 0.0)
    ask = direct(master)
    worker = LeasedRateLimiter(clock, 600, ask)
    worker.set_rate(6000)
    master.set_rate(6000)
    assert now_result(worker.take("leased")) == 0.0
    assert ask.calls == [("leased", 10)]  # type: ignore[attr-defined]


@pytest.mark.parametrize("workers", [2, 3])
def test_workers_together_never_exceed_the_limit(workers: int) -> None:
    """Over simulated minutes of interleaved bursts and lulls on two tenants, the admissions of all
    workers leasing from one daemon bucket stay within that bucket's bound in every time window
    (and the daemon's own requests count too); independent buckets per process would not."""
    per_minute = 1200
    capacity, per_second = float(per_minute), per_minute / 60
    clock = Clock()
    master = RateLimiter(clock, per_minute)
    limiters: list[Admission] = [master] + [LeasedRateLimiter(clock, per_minute, direct(master))
                                            for _ in range(workers)]
    separate: list[RateLimiter] = [RateLimiter(clock, per_minute) for _ in limiters]
    rng = random.Random(workers)
    admitted: dict[str, list[float]] = {"a": [], "b": []}
    unshared: dict[str, list[float]] = {"a": [], "b": []}
    for step in range(3 * 60 * 20):  # three minutes in 50 ms steps
        busy = (step // 200) % 3 != 2  # ten seconds of lull after every twenty
        for _ in range(rng.randrange(40) if busy else rng.randrange(2)):
            tenant = rng.choice("ab")
            i = rng.randrange(len(limiters))
            if now_result(limiters[i].take(tenant)) == 0.0:
                admitted[tenant].append(clock.seconds())
            if separate[i].acquire(tenant) == 0.0:
                unshared[tenant].append(clock.seconds())
        clock.advance(0.05)
    for tenant, times in admitted.items():
        assert len(times) > 2 * capacity  # the limit was reached, again and again
        assert most_in_any_window(times, capacity, per_second) <= capacity + 1e-6, tenant
        assert len(times) <= capacity + per_second * clock.seconds()
        # the same traffic through one bucket per process gets far more: the check above can fail
        assert most_in_any_window(unshared[tenant], capacity, per_second) > 1.5 * capacity


def test_one_worker_gets_nearly_the_whole_limit() -> None:
    """A tenant whose traffic all lands on one worker gets at least its limit less one lease in a
    minute, from a full bucket, and the steady rate after that."""
    per_minute = 6000
    clock = Clock()
    master = RateLimiter(clock, per_minute)
    worker = LeasedRateLimiter(clock, per_minute, direct(master))
    other = LeasedRateLimiter(clock, per_minute, direct(master))  # idle for this tenant
    assert now_result(other.take("u")) == 0.0
    for minute in range(2):
        admitted = 0
        for _ in range(60 * 100):  # 10 ms steps, 3 requests each: 3x the limit
            for _ in range(3):
                admitted += now_result(worker.take("t")) == 0.0
            clock.advance(0.01)
        # at most the burst and the refill, then the refill and what was left leased (one lease)
        most = 2 * per_minute if minute == 0 else per_minute + 10
        assert per_minute - 10 <= admitted <= most, (minute, admitted)


def test_unused_leases_expire_after_a_second() -> None:
    """Leased requests not used within a second are dropped (not kept for a later burst): the worker asks
    the daemon again, and the daemon's bucket is what decides."""
    clock = Clock()
    master = RateLimiter(clock, 6000)
    ask = direct(master)
    worker = LeasedRateLimiter(clock, 6000, ask)
    assert now_result(worker.take("t")) == 0.0  # leased 10, 9 left
    clock.advance(0.99)
    assert now_result(worker.take("t")) == 0.0  # still from the lease
    assert len(ask.calls) == 1  # type: ignore[attr-defined]
    clock.advance(0.01)
    master.lease("t", 6000)  # another process empties the bucket
    assert now_result(worker.take("t")) > 0  # the 8 left expired: refused
    assert len(ask.calls) == 2  # type: ignore[attr-defined]


def test_a_refusal_is_kept_for_its_wait_without_asking() -> None:
    """When the daemon's bucket is empty, the worker refuses the tenant for the wait the daemon gave
    without asking again, then asks."""
    clock = Clock()
    master = RateLimiter(clock, 60)
    ask = direct(master)
    worker = LeasedRateLimiter(clock, 60, ask)
    master.lease("t", 60)
    assert now_result(worker.take("t")) == pytest.approx(1.0)
    clock.advance(0.25)
    for _ in range(10):
        assert now_result(worker.take("t")) == pytest.approx(0.75)
    assert len(ask.calls) == 1  # type: ignore[attr-defined]
    clock.advance(0.75)
    assert now_result(worker.take("t")) == 0.0
    assert len(ask.calls) == 2  # type: ignore[attr-defined]


def test_concurrent_requests_share_one_outstanding_ask() -> None:
    """While a lease is being asked for, the tenant's further requests wait for that answer rather
    than asking again; those the lease does not cover get the next (one) ask; another tenant asks
    on its own."""
    clock = Clock()
    master = RateLimiter(clock, 6000)
    pending: list[tuple[str, int, Deferred[tuple[int, float]]]] = []

    def ask(tenant_id: str, want: int) -> Deferred[tuple[int, float]]:
        d: Deferred[tuple[int, float]] = Deferred()
        pending.append((tenant_id, want, d))
        return d

    worker = LeasedRateLimiter(clock, 6000, ask)
    waits = [ensureDeferred(worker.take("t")) for _ in range(15)]
    other = ensureDeferred(worker.take("u"))
    assert [(t, n) for t, n, _ in pending] == [("t", 10), ("u", 10)]
    assert not any(d.called for d in waits)
    tenant, want, d = pending.pop(0)
    d.callback(master.lease(tenant, want))
    assert [d.called for d in waits] == [True] * 10 + [False] * 5
    assert [(t, n) for t, n, _ in pending] == [("u", 10), ("t", 10)]  # one more ask for the 5 left
    waits.append(ensureDeferred(worker.take("t")))  # arrives meanwhile: joins it
    assert len(pending) == 2
    tenant, want, d = pending.pop()
    master.lease("t", 6000 - 10 - 3)  # other processes leave 3
    d.callback(master.lease(tenant, want))
    assert [d.called for d in waits] == [True] * 13 + [False] * 3
    tenant, want, d = pending.pop()  # the daemon gave some, so it is asked once more for the rest
    assert (tenant, want) == ("t", 10)
    d.callback(master.lease(tenant, want))
    assert [(t, n) for t, n, _ in pending] == [("u", 10)]
    results = [d.result for d in waits]
    assert results[:13] == [0.0] * 13
    assert all(r > 0 for r in results[13:]), results
    pending.pop()[2].callback((10, 0.0))
    assert other.result == 0.0


def test_falls_back_to_a_local_limit_when_the_daemon_is_gone() -> None:
    """When asking fails (the daemon is gone), the waiting and later requests are limited by a
    local bucket at the full limit, and that is logged once, without the tenant."""
    clock = Clock()
    calls: list[str] = []

    def ask(tenant_id: str, want: int) -> Deferred[tuple[int, float]]:
        calls.append(tenant_id)
        return fail(ConnectionError("control channel closed"))

    worker = LeasedRateLimiter(clock, 60, ask)
    with capturedLogs() as events:
        assert now_result(worker.take("secret-tenant")) == 0.0
        assert now_result(worker.take("other")) == 0.0
        results = [now_result(worker.take("secret-tenant")) for _ in range(60)]
    assert results[:59] == [0.0] * 59 and results[59] > 0  # the full limit, then limited
    assert calls == ["secret-tenant"]  # never asks again
    warnings = [e for e in events if e["log_level"] >= LogLevel.warn]
    assert len(warnings) == 1
    text = str(warnings[0]["log_format"]).format(**warnings[0])
    assert "ConnectionError" in text and "secret-tenant" not in text


def test_falls_back_for_requests_waiting_on_a_failed_ask() -> None:
    """Requests waiting for asks that then fail are answered by the local bucket, not left hanging;
    however many asks fail, it is logged once."""
    clock = Clock()
    asks: dict[str, Deferred[tuple[int, float]]] = {}

    def ask(tenant_id: str, want: int) -> Deferred[tuple[int, float]]:
        asks[tenant_id] = Deferred()
        return asks[tenant_id]

    worker = LeasedRateLimiter(clock, 2, ask)
    waits = [ensureDeferred(worker.take("t")) for _ in range(3)]
    other = ensureDeferred(worker.take("u"))
    assert not any(w.called for w in waits + [other])
    with capturedLogs() as events:
        asks["t"].errback(ConnectionError("gone"))
        asks["u"].errback(ConnectionError("gone"))
    assert [w.result for w in waits] == [0.0, 0.0, pytest.approx(30.0)]
    assert other.result == 0.0
    assert len([e for e in events if e["log_level"] >= LogLevel.warn]) == 1
