"""
A job run every few seconds for as long as a service runs (sweeps, polls, watchdog pings).

A failing run is logged and the next one happens on schedule: C{LoopingCall} on its own stops for
good at the first exception.
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

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
            _log.failure("{name} failed; next run in {interval}s", name=self.name, interval=self.interval)


async def _maybe_await(result: Awaitable[Any] | Any) -> Any:
    if hasattr(result, "__await__"):
        return await result
    return result
