"""
The IMAP mailbox poller (the spec's Email Inbox connector): each connector kept in the store gets
its own worker, whose blocking imapclient session lives on a thread of its own.

A poll takes up to C{max_messages} UNSEEN messages (fetched with C{BODY.PEEK[]}, so fetching does not
mark them), delivers each through intake under the connector's tenant and template (one request from
the tenant's rate limit per message, as the e-mail route takes), and sets C{\\Seen} on a message only
once its event is durable. A poll that stops half-way (the sink failing, the rate limit reached, the
daemon stopping, the connection dropping) leaves the rest unseen, and the next poll reads them again:
nothing is lost, and a message whose \\Seen flag could not be set after its event was written may be
read twice. Auth failures, TLS errors and dropped connections are logged, counted in
C{aisoc_ingest_imap_polls_total{outcome}} and retried with exponential backoff on the injected clock;
they never stop the daemon or another connector.
"""
from __future__ import annotations

import imaplib
import socket
import ssl
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from imapclient import IMAPClient
from imapclient.exceptions import LoginError
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredLock, gatherResults
from twisted.internet.interfaces import IDelayedCall, IReactorFromThreads, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from aisoc_inboxd.config import ImapSettings
from aisoc_inboxd.episode import FailureLog
from aisoc_inboxd.formats.email.mime import parse_mime
from aisoc_inboxd.formats.email.record import as_record
from aisoc_inboxd.intake.intake import Intake
from aisoc_inboxd.intake.refusals import Refused
from aisoc_inboxd.metrics import Metrics
from aisoc_inboxd.serial_thread import SerialThread
from aisoc_inboxd.store import ImapConnectorRecord, Store

T = TypeVar("T")
ROUTE = "imap"
#: first retry delay after a failed poll; doubled per failure up to C{max_backoff}
FIRST_BACKOFF = 5.0
_SEEN = b"\\Seen"
_BODY = b"BODY[]"
_HEADER = b"BODY[HEADER]"
_SIZE = b"RFC822.SIZE"


@dataclass(frozen=True)
class PollResult:
    """
    What one poll did: messages made durable and marked seen, and how many were left unseen.
    """

    delivered: int
    outcome: str


def error_outcome(error: BaseException) -> str:
    """
    The metric outcome of a failed poll.
    """
    if isinstance(error, Refused) and error.outcome == "rate_limited":
        return "rate_limited"
    if isinstance(error, LoginError):
        return "auth_failed"
    if isinstance(error, ssl.SSLError):
        return "tls_error"
    if isinstance(error, (OSError, socket.timeout, imaplib.IMAP4.abort, EOFError)):
        return "connection_error"
    return "error"


class ImapSession:
    """
    One connector's IMAP connection. Every method blocks and runs on the connector's own thread
    only; a failure closes the connection, so the next call reconnects.
    """

    def __init__(self, connector: ImapConnectorRecord, settings: ImapSettings) -> None:
        self._connector = connector
        self._settings = settings
        self._client: IMAPClient | None = None

    def _open(self) -> IMAPClient:
        if self._client is not None:
            return self._client
        c = self._connector
        context = None
        if c.use_ssl:
            context = ssl.create_default_context(cafile=self._settings.ca_file)
        client = IMAPClient(c.host, port=c.port, ssl=c.use_ssl, ssl_context=context,
                            timeout=self._settings.timeout)
        try:
            client.login(c.username, c.password)
            client.select_folder(c.mailbox)
        except BaseException:
            _shutdown(client)
            raise
        self._client = client
        return client

    def _guarded(self, work: Callable[[IMAPClient], T]) -> T:
        try:
            return work(self._open())
        except BaseException:
            self.close()
            raise

    def fetch_unseen(self, limit: int) -> list[tuple[int, bytes, bool]]:
        """
        Up to C{limit} unseen messages, oldest first, as (uid, RFC 822 bytes, whole); a message over
        C{max_message_bytes} comes as its header only (C{whole} false). Nothing is marked seen.
        """
        def fetch(client: IMAPClient) -> list[tuple[int, bytes, bool]]:
            uids = sorted(client.search(["UNSEEN"]))[:limit]
            if not uids:
                return []
            sizes = client.fetch(uids, [_SIZE])
            small = [u for u in uids if sizes.get(u, {}).get(_SIZE, 0) <= self._settings.max_message_bytes]
            large = [u for u in uids if u not in small]
            bodies = client.fetch(small, ["BODY.PEEK[]"]) if small else {}
            heads = client.fetch(large, ["BODY.PEEK[HEADER]"]) if large else {}
            found = [(u, bodies[u][_BODY], True) for u in small if _BODY in bodies.get(u, {})]
            found += [(u, heads[u][_HEADER], False) for u in large if _HEADER in heads.get(u, {})]
            return sorted(found)

        return self._guarded(fetch)

    def mark_seen(self, uid: int) -> None:
        self._guarded(lambda client: client.add_flags([uid], [_SEEN]))

    def check(self) -> int:
        """
        Log in and open the mailbox; the number of unseen messages (for C{aisoc-inboxd imap test}).
        """
        return self._guarded(lambda client: len(client.search(["UNSEEN"])))

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            _shutdown(client)


def _shutdown(client: IMAPClient) -> None:
    """
    Log out politely, or just drop the socket when the connection is already broken.
    """
    try:
        client.logout()
    except Exception:
        try:
            client.shutdown()
        except Exception:
            pass


class ConnectorWorker:
    """
    Polls one connector on its own single thread, every C{poll_interval} seconds after a good poll
    and with backoff after a failed one. L{poll} may also be called directly; polls never overlap.
    """

    _log = Logger()

    def __init__(self, connector: ImapConnectorRecord, settings: ImapSettings, intake: Intake,
                 metrics: Metrics, reactor: IReactorFromThreads, clock: IReactorTime) -> None:
        self.connector = connector
        self._settings = settings
        self._intake = intake
        self._metrics = metrics
        self._clock = clock
        self._thread = SerialThread(reactor, f"imap-{connector.uid}")
        self._session = ImapSession(connector, settings)
        self._lock = DeferredLock()
        self._next: IDelayedCall | None = None
        self._failures = 0
        self._stopping = False

    def start(self) -> None:
        self._thread.start()
        self._schedule(0)

    def stop(self) -> Deferred[None]:
        """
        Stop polling: the message in hand is finished (its \\Seen set once durable), the rest stays
        unseen; then the connection is closed and the thread ends.
        """
        self._stopping = True
        if self._next is not None and self._next.active():
            self._next.cancel()
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        await self._lock.acquire()
        try:
            await self._blocking(self._session.close)
        except Exception:
            self._log.failure("closing IMAP connector {uid}", uid=self.connector.uid)
        finally:
            self._lock.release()
            self._thread.stop()

    def poll(self) -> Deferred[PollResult]:
        return self._lock.run(lambda: Deferred.fromCoroutine(self._poll()))

    def _schedule(self, delay: float) -> None:
        if not self._stopping:
            self._next = self._clock.callLater(delay, self._scheduled)

    def _scheduled(self) -> None:
        self.poll().addCallback(self._after)

    def _after(self, result: PollResult) -> None:
        if result.outcome == "ok":
            self._failures = 0
            self._schedule(self.connector.poll_interval)
            return
        self._failures += 1
        delay = min(FIRST_BACKOFF * 2 ** (self._failures - 1), self._settings.max_backoff)
        self._log.info("IMAP connector {uid}: retrying in {delay}s", uid=self.connector.uid, delay=delay)
        self._schedule(delay)

    async def _poll(self) -> PollResult:
        """
        One poll; never raises (a periodic job that raised would stop for good).
        """
        c = self.connector
        delivered = 0
        try:
            if self._stopping:
                return PollResult(0, "stopped")
            try:
                binding = self._intake.bind(c.tenant_id, c.template_id)
            except Refused:
                self._log.error("IMAP connector {uid} (tenant {tenant}): template {template!r} is not "
                                "loaded or not allowed; not polling", uid=c.uid, tenant=c.tenant_id,
                                template=c.template_id)
                return self._count(delivered, "error")
            messages = await self._blocking(self._session.fetch_unseen, c.max_messages)
            for uid, raw, whole in messages:
                if self._stopping:
                    break
                record = parse_mime(raw)
                if not whole:
                    record["truncated"] = True
                await self._intake.admit(binding)
                await self._intake.deliver(binding, ROUTE, [as_record(record)], self._clock.seconds())
                await self._blocking(self._session.mark_seen, uid)
                delivered += 1
        except Exception as error:
            outcome = error_outcome(error)
            self._log.warn("IMAP connector {uid} (tenant {tenant}, {user}@{host}:{port}) poll failed "
                           "({outcome}): {error}", uid=c.uid, tenant=c.tenant_id, user=c.username,
                           host=c.host, port=c.port, outcome=outcome, error=_describe(error))
            return self._count(delivered, outcome)
        return self._count(delivered, "ok")

    def _count(self, delivered: int, outcome: str) -> PollResult:
        """
        Count the poll and the messages it delivered (once per poll, not per message).
        """
        if delivered:
            self._metrics.imap_messages.labels(self.connector.uid).inc(delivered)
        self._metrics.imap_polls.labels(self.connector.uid, outcome).inc()
        return PollResult(delivered, outcome)

    def _blocking(self, work: Callable[..., T], *args: Any) -> Deferred[T]:
        return self._thread.run(work, *args)


def _describe(error: BaseException) -> str:
    """
    The error as an operator reads it; IMAP servers do not echo passwords in their replies.
    """
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class ImapPoller(Service):
    """
    Keeps one L{ConnectorWorker} per connector in the store, re-reading the list every
    C{refresh_interval} seconds so connectors added or removed with the CLI take effect.
    Started by the daemon once the store is upgraded.
    """

    name = "imap-poller"
    _log = Logger()

    def __init__(self, store: Store, intake: Intake, metrics: Metrics, settings: ImapSettings, reactor: Any,
                 clock: IReactorTime) -> None:
        self._store = store
        self._intake = intake
        self._metrics = metrics
        self._settings = settings
        self._reactor = reactor
        self._clock = clock
        self.workers: dict[str, ConnectorWorker] = {}
        self._loop: LoopingCall | None = None
        self._refreshing = DeferredLock()
        self._failures = FailureLog(clock, self._log, "reading the IMAP connectors")

    def startService(self) -> None:
        super().startService()
        self._loop = LoopingCall(self.refresh)
        self._loop.clock = self._clock
        self._loop.start(self._settings.refresh_interval, now=True)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        workers, self.workers = list(self.workers.values()), {}
        return gatherResults([w.stop() for w in workers], consumeErrors=True).addCallback(lambda _: None)

    def refresh(self) -> Deferred[None]:
        """
        Start workers for new connectors and stop those of removed ones; never fails.
        """
        return self._refreshing.run(lambda: Deferred.fromCoroutine(self._refresh()))

    async def _refresh(self) -> None:
        try:
            connectors = await self._store.imap_connectors_to_poll()
        except Exception:
            self._failures.failed(Failure(), f"in {self._settings.refresh_interval:g}s")
            return
        self._failures.worked()
        if not self.running:
            return
        wanted = {c.uid: c for c in connectors}
        for uid in [uid for uid in self.workers if uid not in wanted]:
            self._log.info("IMAP connector {uid} removed; stopping it", uid=uid)
            await self.workers.pop(uid).stop()
        for uid, connector in wanted.items():
            if uid not in self.workers:
                worker = ConnectorWorker(connector, self._settings, self._intake, self._metrics, self._reactor,
                                         self._clock)
                self.workers[uid] = worker
                self._log.info("IMAP connector {uid} (tenant {tenant}): polling {user}@{host}:{port}/"
                               "{mailbox} every {interval}s", uid=uid, tenant=connector.tenant_id,
                               user=connector.username, host=connector.host, port=connector.port,
                               mailbox=connector.mailbox, interval=connector.poll_interval)
                worker.start()

    def poll(self, uid: str) -> Deferred[PollResult]:
        """
        Poll one running connector now (after any poll in progress).
        """
        return self.workers[uid].poll()
