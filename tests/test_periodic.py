"""
Periodic jobs keep their schedule through failures, on an injected clock.
"""
from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from aisoc_inboxd.periodic import Periodic


def test_a_failing_run_does_not_stop_the_schedule() -> None:
    """Runs that raise are logged and the next run still happens every interval."""
    clock = Clock()
    runs: list[float] = []

    def job() -> None:
        runs.append(clock.seconds())
        if len(runs) == 2:
            raise RuntimeError("store unreachable")

    service = Periodic("sweeper", job, clock, interval=10)
    service.startService()
    for _ in range(4):
        clock.advance(10)
    service.stopService()
    clock.advance(100)
    assert runs == [0, 10, 20, 30, 40]


def test_async_jobs_are_awaited_and_first_run_can_wait() -> None:
    """With now=False the first run is after one interval; a Deferred-returning job is awaited."""
    clock = Clock()
    pending: list[Deferred[None]] = []

    def job() -> Deferred[None]:
        pending.append(Deferred())
        return pending[-1]

    service = Periodic("poller", job, clock, interval=1, now=False)
    service.startService()
    assert pending == []
    clock.advance(1)
    assert len(pending) == 1
    clock.advance(5)  # the run in progress holds the next one back
    assert len(pending) == 1
    pending[0].callback(None)
    clock.advance(1)
    assert len(pending) == 2
    service.stopService()
    pending[1].callback(None)
    clock.advance(5)
    assert len(pending) == 2  # stopped: no more runs
