"""
A job run every few seconds for as long as a service runs (sweeps, polls, watchdog pings).

A failing run is logged and the next one happens on schedule: C{LoopingCall} on its own stops for
good at the first exception. A job that keeps failing is logged as an episode (L{FailureLog}): when
it begins, every few minutes while it goes on, when it works again — not once per run.
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from aisoc_inboxd.episode import FailureLog

_log = Logger()


class Periodic(Service):
    def __init__(self, name: str, job: Callable[[], Awaitable[Any] | Any], clock: IReactorTime,
                 interval: float, now: bool = True) -> None:
        """
        @param now: run once at start, rather than first after C{interval}.
        """
        self.name = name
        self._job = job
        self._clock = clock
        self.interval = interval
        self._now = now
        self._loop: LoopingCall | None = None
        self._failures = FailureLog(clock, _log, name)

    def startService(self) -> None:
        super().startService()
        self._loop = LoopingCall(self._run)
        self._loop.clock = self._clock
        self._loop.start(self.interval, now=self._now)

    def stopService(self) -> None:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    async def _run(self) -> None:
        try:
            await _maybe_await(self._job())
        except Exception:
            self._failures.failed(Failure(), f"in {self.interval:g}s")
        else:
            self._failures.worked()


async def _maybe_await(result: Awaitable[Any] | Any) -> Any:
    if hasattr(result, "__await__"):
        return await result
    return result
