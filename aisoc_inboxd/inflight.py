"""
Counting in-flight work so shutdown can wait for it, bounded by a timeout on the injected clock.
"""
from __future__ import annotations

from typing import TypeVar

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime

T = TypeVar("T")


class InFlight:
    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._count = 0
        self._waiters: list[Deferred[None]] = []

    def __len__(self) -> int:
        return self._count

    def track(self, d: Deferred[T]) -> Deferred[T]:
        """
        Count C{d} until it fires, whichever way.
        """
        self.started()
        return d.addBoth(self._done)

    def started(self) -> None:
        """
        Count one piece of work until L{ended} is called for it (work without a Deferred).
        """
        self._count += 1

    def ended(self) -> None:
        self._count -= 1
        if self._count == 0:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                waiter.callback(None)

    def _done(self, result: T) -> T:
        self.ended()
        return result

    def drained(self, timeout: float) -> Deferred[None]:
        """
        Fire when nothing is in flight; fail with L{defer.TimeoutError} after C{timeout} seconds.
        """
        if self._count == 0:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiters.append(d)
        return d.addTimeout(timeout, self._clock)
