"""
Periodic jobs keep their schedule through failures, on an injected clock.
"""
from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent

from aisoc_inboxd.periodic import Periodic
from aisoc_inboxd.store import StoreError


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


def test_a_job_failing_for_an_hour_is_a_few_log_lines() -> None:
    """A job that fails every run for an hour because the store does not answer logs when the failures
    begin, a reminder every five minutes with how many runs failed, and one line when it works again:
    no traceback (the store's own health log tells the outage) and not one line per run."""
    clock = Clock()
    failing = True

    def job() -> None:
        if failing:
            raise StoreError("PostgreSQL at db:5432/inbox as aisoc: no answer within 3 s", "timeout")

    service = Periodic("idempotency-sweeper", job, clock, interval=10)
    with capturedLogs() as events:
        service.startService()
        for _ in range(360):
            clock.advance(10)
        failing = False
        clock.advance(10)
        clock.advance(10)
    service.stopService()
    assert [e for e in events if "log_failure" in e] == []
    lines = [formatEvent(e) for e in events]
    assert lines[0] == "idempotency-sweeper failed: PostgreSQL at db:5432/inbox as aisoc: no answer within 3 s; " \
                       "retrying in 10s"
    assert lines[1:-1] == [f"idempotency-sweeper still failing after {s} s ({s // 10 + 1} attempts); latest: "
                           f"PostgreSQL at db:5432/inbox as aisoc: no answer within 3 s" for s in range(300, 3601, 300)]
    assert lines[-1] == "idempotency-sweeper works again after 3610 s (361 attempts failed)"


def test_an_unexpected_failure_is_logged_with_its_traceback_once() -> None:
    """A failure that is not the store's (a bug) keeps its traceback, the first time."""
    clock = Clock()

    def job() -> None:
        raise KeyError("boom")

    service = Periodic("sweeper", job, clock, interval=10)
    with capturedLogs() as events:
        service.startService()
        for _ in range(5):
            clock.advance(10)
    service.stopService()
    assert len(events) == 1 and events[0]["log_failure"].check(KeyError)
