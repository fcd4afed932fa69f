"""
Telling every daemon instance that a token was retired, so its cache forgets it at once rather than
after the TTL.

PostgreSQL: a trigger NOTIFYs channel C{aisoc_inbox_invalidate} with the fingerprint whenever a
token is rotated or revoked (by this daemon or by anything else writing the table); each instance
LISTENs on a dedicated connection in its own thread. After a (re)connection the whole cache is
dropped, since notifications sent while disconnected are lost. A quiet link is checked with a query
every so often, and one that does not answer in time is taken for dead and reopened: a link that
went silent (a firewall or NAT that forgot it) would otherwise keep the cache trusting revoked
tokens until their TTL.

SQLite (one host, but the CLI is another process): the daemon polls for tokens retired since its
last look, once a second.
"""
from __future__ import annotations

import select
import threading
import time
from typing import Any, Callable

from psycopg2.extensions import POLL_OK, POLL_READ, POLL_WRITE

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from aisoc_inboxd.episode import Episode

CHANNEL = "aisoc_inbox_invalidate"

#: called with a fingerprint, or with None for "forget everything"
OnInvalidate = Callable[[str | None], None]


class LinkSilent(Exception):
    """
    The LISTEN connection did not answer within its time.
    """


class PostgresInvalidationListener(Service):
    name = "token-invalidation"
    _log = Logger()

    def __init__(self, connect: Callable[[], Any], on_invalidate: OnInvalidate, reactor: Any,
                 check_interval: float, answer_within: float, on_link: Callable[[bool], None] = lambda up: None,
                 max_backoff: float = 30.0) -> None:
        """
        @param connect: opens a new asynchronous psycopg2 connection (called on the listener thread).
        @param check_interval: seconds without traffic after which the link is checked with a query.
        @param answer_within: seconds the server has to answer the connection, C{LISTEN} or a check.
        @param on_link: told (on the reactor thread) when the link opens (C{True}) or fails (C{False}).
        """
        self._connect = connect
        self._on_invalidate = on_invalidate
        self._reactor = reactor
        self._check_interval = check_interval
        self._answer_within = answer_within
        self._on_link = on_link
        self._max_backoff = max_backoff
        self._stopping = threading.Event()
        self._stopped: Deferred[None] | None = None
        self._down = Episode(reactor)

    def startService(self) -> None:
        super().startService()
        self._stopping.clear()
        self._stopped = Deferred()
        threading.Thread(target=self._run, name="pg-listen", daemon=True).start()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        self._stopping.set()
        assert self._stopped is not None
        return self._stopped

    def _run(self) -> None:
        backoff = 0.5
        try:
            while not self._stopping.is_set():
                try:
                    self._listen()
                    backoff = 0.5
                except Exception as e:
                    error = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                    self._reactor.callFromThread(self._failed, error, backoff)
                    self._stopping.wait(backoff)
                    backoff = min(backoff * 2, self._max_backoff)
        finally:
            stopped = self._stopped
            self._reactor.callFromThread(stopped.callback, None)

    def _listen(self) -> None:
        """
        Open the link and deliver its notifications until stopping; raise when it fails.
        """
        connection = self._connect()
        try:
            self._answered(connection)
            cursor = connection.cursor()
            cursor.execute(f"LISTEN {CHANNEL}")
            self._answered(connection)
            self._reactor.callFromThread(self._opened)
            heard = time.monotonic()
            while not self._stopping.is_set():
                if select.select([connection], [], [], 0.5)[0]:
                    connection.poll()
                elif time.monotonic() - heard < self._check_interval:
                    continue
                else:
                    cursor.execute("SELECT 1")
                    self._answered(connection)
                heard = time.monotonic()
                self._deliver(connection)
        finally:
            connection.close()

    def _failed(self, error: str, delay: float) -> None:
        """
        On the reactor thread: the link failed; logged when the failures begin and every few
        minutes while they go on, not at every retry.
        """
        self._on_link(False)
        news = self._down.occurred()
        if news == "began":
            self._log.warn("LISTEN {channel} failed ({error}); retrying in {delay}s, then with backoff up to "
                           "{max_backoff}s", channel=CHANNEL, error=error, delay=delay, max_backoff=self._max_backoff)
        elif news == "ongoing":
            self._log.warn("LISTEN {channel} still failing after {seconds:.0f} s ({failures} attempts); latest: "
                           "{error}", channel=CHANNEL, seconds=self._down.lasted(), failures=self._down.occurrences,
                           error=error)

    def _opened(self) -> None:
        """
        On the reactor thread: the link is open; notifications sent before may be lost, so the
        whole cache is dropped.
        """
        ended = self._down.end()
        if ended is not None:
            self._log.info("LISTEN {channel} open again after {seconds:.0f} s ({failures} attempts failed)",
                           channel=CHANNEL, seconds=ended[0], failures=ended[1])
        self._on_link(True)
        self._on_invalidate(None)

    def _answered(self, connection: Any) -> None:
        """
        Wait until the connection's pending work (opening, a statement) is done; L{LinkSilent} when
        the server takes longer than C{answer_within}.
        """
        deadline = time.monotonic() + self._answer_within
        while (state := connection.poll()) != POLL_OK:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LinkSilent(f"no answer within {self._answer_within:g} s")
            if state == POLL_READ:
                select.select([connection], [], [], left)
            elif state == POLL_WRITE:
                select.select([], [connection], [], left)
        self._deliver(connection)

    def _deliver(self, connection: Any) -> None:
        while connection.notifies:
            notice = connection.notifies.pop(0)
            self._reactor.callFromThread(self._on_invalidate, notice.payload)


class RetiredTokenPoller:
    """
    Asks the store every C{interval} seconds which tokens were retired since the last look.
    """

    def __init__(self, retired_since: Callable[[float], Deferred[list[tuple[str, float]]]],
                 on_invalidate: OnInvalidate, clock: IReactorTime) -> None:
        self._retired_since = retired_since
        self._on_invalidate = on_invalidate
        self._since = clock.seconds()

    async def poll(self) -> None:
        for fingerprint, when in await self._retired_since(self._since):
            self._on_invalidate(fingerprint)
            self._since = max(self._since, when)
