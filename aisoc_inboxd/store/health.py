"""
Whether the token store answers, as learnt from the calls the daemon makes to it anyway (no probe
of its own): for the status page, C{/metrics} and a few log lines — when it goes down, a reminder
every few minutes while it stays down, and when it is back — rather than one per failed request.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from aisoc_inboxd.episode import Episode
from aisoc_inboxd.store import UNAVAILABLE, StoreError

if TYPE_CHECKING:
    from aisoc_inboxd.metrics import TokenStoreMetrics


class StoreHealth:
    """
    Told of every store call's outcome (on the reactor thread).

    @ivar up: C{False} from a call the store did not answer (L{UNAVAILABLE}) until one it answers.
    @ivar since: when C{up} last changed (epoch seconds).
    @ivar last_error: the latest L{StoreError}'s message (names where the store is, never a password).
    @ivar listening: the invalidation link (PostgreSQL C{LISTEN}): C{None} where there is none.
    """

    _log = Logger()

    def __init__(self, clock: IReactorTime, metrics: TokenStoreMetrics | None = None) -> None:
        self._clock = clock
        self._metrics = metrics
        self.up = True
        self.since = clock.seconds()
        self.last_error: str | None = None
        self.listening: bool | None = None
        self._down = Episode(clock)
        if metrics is not None:
            metrics.up.set(1)

    def answered(self) -> None:
        ended = self._down.end()
        if ended is not None:
            seconds, failures = ended
            self._log.info("token store answers again after {seconds:.1f} s ({failures} calls failed)",
                           seconds=seconds, failures=failures)
            self._set(True)

    def failed(self, error: StoreError) -> None:
        self.last_error = str(error)
        if self._metrics is not None:
            self._metrics.errors.labels(error.reason).inc()
        if error.reason not in UNAVAILABLE:
            return
        news = self._down.occurred()
        if news == "began":
            self._log.warn("token store unavailable ({reason}): {error}; uncached tokens get 503 until it "
                           "answers", reason=error.reason, error=str(error))
            self._set(False)
        elif news == "ongoing":
            self._log.warn("token store still unavailable after {seconds:.0f} s ({failures} calls failed); "
                           "latest: {error}", seconds=self._down.lasted(), failures=self._down.occurrences,
                           error=str(error))

    def link(self, up: bool) -> None:
        """
        The invalidation link opened (C{True}) or failed (C{False}).
        """
        self.listening = up

    def _set(self, up: bool) -> None:
        self.up, self.since = up, self._clock.seconds()
        if self._metrics is not None:
            self._metrics.up.set(1 if up else 0)
