"""
A failure that lasts — the token store not answering, push stats that cannot be stored, a periodic
job that keeps failing — told in a few log lines: when it begins, a reminder every few minutes while
it lasts, and when it ends; never one line (or traceback) per failed call.
"""
from __future__ import annotations

from typing import Literal

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from aisoc_inboxd.store import StoreError

#: seconds between two "still failing" reminders of one episode
REMIND_EVERY = 300.0


class Episode:
    """
    Counts the occurrences of one failure and says which of them deserve a log line; the caller
    words the lines.

    @ivar began: when the ongoing episode began (epoch seconds), C{None} between episodes.
    @ivar occurrences: how often it occurred since it began.
    """

    def __init__(self, clock: IReactorTime, remind_every: float = REMIND_EVERY) -> None:
        self._clock = clock
        self._remind_every = remind_every
        self.began: float | None = None
        self.occurrences = 0
        self._reminded = 0.0

    @property
    def ongoing(self) -> bool:
        return self.began is not None

    def lasted(self) -> float:
        """
        Seconds since the ongoing episode began (0 between episodes).
        """
        return 0.0 if self.began is None else self._clock.seconds() - self.began

    def occurred(self) -> Literal["began", "ongoing"] | None:
        """
        Count one occurrence: C{"began"} when it begins an episode, C{"ongoing"} when a reminder is
        due (every C{remind_every} seconds), else C{None} (nothing to log).
        """
        now = self._clock.seconds()
        self.occurrences += 1
        if self.began is None:
            self.began = self._reminded = now
            self.occurrences = 1
            return "began"
        if now - self._reminded >= self._remind_every:
            self._reminded = now
            return "ongoing"
        return None

    def end(self) -> tuple[float, int] | None:
        """
        End the ongoing episode: how long it lasted (seconds) and how often it occurred; C{None}
        when there was none (nothing to log).
        """
        if self.began is None:
            return None
        ended = (self.lasted(), self.occurrences)
        self.began, self.occurrences = None, 0
        return ended


class FailureLog:
    """
    The log of a job that may fail run after run (a periodic sweep, the push stats flush, reading
    the IMAP connectors): the first failure — with its traceback, unless it is the token store not
    answering, which the store's health log already tells — then a reminder every few minutes while
    failures go on, and one line when the job works again.
    """

    def __init__(self, clock: IReactorTime, log: Logger, what: str) -> None:
        """
        @param what: the job, as the log lines name it (e.g. C{"push stats: storing counts"}).
        """
        self._episode = Episode(clock)
        self._log = log
        self._what = what

    def failed(self, failure: Failure, retry: str) -> None:
        """
        @param retry: when the job runs again, e.g. C{"in 5s"}.
        """
        news = self._episode.occurred()
        if news == "began" and not failure.check(StoreError):
            self._log.failure("{what} failed; retrying {retry}", failure, what=self._what, retry=retry)
        elif news == "began":
            self._log.warn("{what} failed: {error}; retrying {retry}", what=self._what,
                           error=failure.getErrorMessage(), retry=retry)
        elif news == "ongoing":
            self._log.warn("{what} still failing after {seconds:.0f} s ({failures} attempts); latest: {error}",
                           what=self._what, seconds=self._episode.lasted(), failures=self._episode.occurrences,
                           error=failure.getErrorMessage())

    def worked(self) -> None:
        ended = self._episode.end()
        if ended is not None:
            self._log.info("{what} works again after {seconds:.0f} s ({failures} attempts failed)",
                           what=self._what, seconds=ended[0], failures=ended[1])
