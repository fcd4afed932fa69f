"""
The group commit's writer thread (L{SerialThread}): every call runs on one thread of its own, never
the reactor's, one at a time in the order handed over; each result or error comes back on the
reactor's thread; stopping runs what was handed over before it.
"""
from __future__ import annotations

import threading
import time

import pytest
import pytest_twisted
from twisted.internet.defer import gatherResults

from aisoc_inboxd.serial_thread import SerialThread


@pytest_twisted.ensureDeferred
async def test_calls_run_in_order_one_at_a_time_off_the_reactor(reactor) -> None:
    """Calls handed over at once run one after the other, in order, on one thread that is not the
    reactor's; their results come back on the reactor's thread."""
    worker = SerialThread(reactor, "test-writer")
    worker.start()
    ran: list[tuple[int, str]] = []
    busy = threading.Lock()

    def call(n: int) -> int:
        assert busy.acquire(blocking=False), "two calls ran at once"
        try:
            time.sleep(0.001)  # widens the window two overlapping calls would need
            ran.append((n, threading.current_thread().name))
        finally:
            busy.release()
        return n * 10

    try:
        answered: list[bool] = []
        ds = [worker.run(call, n) for n in range(20)]
        for d in ds:
            d.addCallback(lambda result: answered.append(threading.current_thread() is threading.main_thread())
                          or result)
        assert await gatherResults(ds) == [n * 10 for n in range(20)]
        assert [n for n, _ in ran] == list(range(20))
        assert {name for _, name in ran} == {"test-writer"}
        assert answered == [True] * 20
    finally:
        worker.stop()


@pytest_twisted.ensureDeferred
async def test_an_error_comes_back_as_the_calls_failure(reactor) -> None:
    """A call that raises fails its Deferred with that error; the thread goes on with the next."""
    worker = SerialThread(reactor, "test-writer")
    worker.start()

    def fail() -> None:
        raise OSError(28, "No space left on device")

    try:
        with pytest.raises(OSError, match="No space left"):
            await worker.run(fail)
        assert await worker.run(lambda a, b=0: a + b, 1, b=2) == 3
    finally:
        worker.stop()


def test_stop_runs_what_was_handed_over_before(reactor) -> None:
    """Stopping waits for the calls handed over before it, then ends the thread."""
    worker = SerialThread(reactor, "test-writer")
    worker.start()
    ran: list[int] = []
    for n in range(5):
        worker.run(lambda n=n: (time.sleep(0.001), ran.append(n)))
    worker.stop()
    assert ran == list(range(5))
    assert not any(t.name == "test-writer" for t in threading.enumerate())
