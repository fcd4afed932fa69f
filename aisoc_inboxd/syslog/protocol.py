"""
The syslog listeners' protocols: TCP/TLS streams (RFC 6587 framing) and UDP datagrams, both handing
frames to one L{SyslogIntake} per listener (a L{ListenerIntake}: in-flight ceiling, batches per
template, accounting), which publishes them through intake.

Syslog has no acknowledgement, so the daemon cannot answer "durable" as the HTTP routes do; what it
can do is not read faster than the sink writes. Past C{max_in_flight} (or while the Kafka sink says
it is saturated) a TCP connection stops reading (C{pauseProducing}: the kernel's window pushes back
on the sender, which buffers or blocks) until the count drains; UDP cannot push back, so datagrams
are dropped and counted (C{aisoc_ingest_syslog_dropped_total{reason="saturated"}}).

The frames one C{dataReceived} completes are published together: one batch per template (CEF
frames with the CEF template, the rest with the syslog template), one Deferred per batch.

A stream connection that sends nothing for the listener's idle timeout is closed (never while it is
paused by back-pressure: then it is the daemon that is not reading), as is one whose frame claims
more octets than can be skipped; both are counted by reason
(C{aisoc_ingest_syslog_connections_closed_total}). Frames a connection loses (oversized, cut short)
are counted, and logged once per connection with the peer, so that one bad frame never takes the rest
of a connection away unnoticed.
"""
from __future__ import annotations

from zoneinfo import ZoneInfo

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure

from aisoc_inboxd.config import SyslogListenerSettings
from aisoc_inboxd.formats.syslog_cef import frame_items
from aisoc_inboxd.inflight import InFlight
from aisoc_inboxd.intake.intake import Intake
from aisoc_inboxd.intake.listener import ListenerIntake
from aisoc_inboxd.deliveries import FrameSamples
from aisoc_inboxd.metrics import SyslogMetrics
from aisoc_inboxd.sinks import ISaturating
from aisoc_inboxd.syslog.framing import FrameDecoder

#: the route events of syslog listeners are published under (C{metadata.log_source})
ROUTE = "syslog"


class SyslogIntake(ListenerIntake):
    """
    A syslog listener's intake (L{ListenerIntake}): its frames decoded by
    L{aisoc_inboxd.formats.syslog_cef.frame_items} (RFC 5424 CEF frames in one pass, their events made
    by the fused path) in the listener's
    time zone, and the frame size limit and idle timeout its protocols apply.
    """

    def __init__(self, settings: SyslogListenerSettings, intake: Intake, metrics: SyslogMetrics,
                 inflight: InFlight, max_in_flight: int, sink: ISaturating | None = None,
                 idle_timeout: float | None = None, samples: FrameSamples | None = None) -> None:
        """
        @param idle_timeout: seconds a stream connection may send nothing before it is closed; None
            for never.
        @param samples: keeps the last frames and malformed frames read (recent deliveries).
        """
        zone = ZoneInfo(settings.timezone)
        super().__init__(settings.name, ROUTE, settings.tenant, settings.template, settings.cef_template,
                         lambda frames, now: frame_items(frames, now, zone), intake, metrics, inflight,
                         max_in_flight, sink, samples)
        self.max_frame_bytes = settings.max_frame_bytes
        self.idle_timeout = idle_timeout


class SyslogStreamProtocol(Protocol, TimeoutMixin):
    """
    One TCP or TLS connection: RFC 6587 frames (octet counting, LF or NUL trailers, per frame) out of
    whatever segments arrive; reading pauses while the listener is saturated; closed when idle.
    """

    _log = Logger()

    def __init__(self, listener: SyslogIntake, idle: IdleCloses) -> None:
        self._listener = listener
        self._idle = idle
        self._decoder = FrameDecoder(listener.max_frame_bytes)
        self._paused = False
        self._lost = False  # Protocol.connected stays 1 after the connection is lost
        self._peer = "?"
        self._reported: set[str] = set()

    def connectionMade(self) -> None:
        self._peer = _host(self.transport.getPeer())
        self._listener.count("connections")
        self._log.debug("{listener}: connection from {peer}", listener=self._listener.name, peer=self._peer)
        self.setTimeout(self._listener.idle_timeout)

    def dataReceived(self, data: bytes) -> None:
        if self._decoder.abandoned is not None:
            return  # closing: what still arrives is not read
        self.resetTimeout()
        frames = self._decoder.feed(data)
        if self._decoder.abandoned is not None:
            self._abandon(self._decoder.abandoned)
        self._deliver(frames)
        if self._decoder.abandoned is None and not self._paused and self._listener.saturated:
            self._pause()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self._lost = True
        self.setTimeout(None)
        truncated = self._decoder.truncated
        self._deliver(self._decoder.end())
        if self._decoder.truncated > truncated:
            self._listener.discard("truncated", self._decoder.truncated - truncated)
            self._report_once("truncated", "{listener}: the connection from {peer} ended inside an "
                                           "octet-counted frame; the frame is dropped")

    def timeoutConnection(self) -> None:
        self._idle.closed(self._peer)
        self.transport.loseConnection()

    def _deliver(self, frames: list[bytes]) -> None:
        oversized, self._decoder.oversized = self._decoder.oversized, 0
        if oversized:
            self._listener.discard("oversized", oversized)
            self._report_once("oversized", "{listener}: dropped a frame over {limit} octets from {peer}; the "
                                           "connection stays open (later ones from it are only counted)",
                              limit=self._listener.max_frame_bytes)
        if frames:
            self._listener.submit(frames, self._peer)

    def _abandon(self, claimed: int) -> None:
        self._reported.add("oversized")  # this line says more than the oversized one would
        self._listener.count("closed", 1, "oversized")
        self._log.warn("{listener}: {peer} sent a frame claiming {claimed} octets, too many to skip; "
                       "connection closed", listener=self._listener.name, peer=self._peer, claimed=claimed)
        self.setTimeout(None)
        self.transport.loseConnection()

    def _report_once(self, reason: str, message: str, **fields: object) -> None:
        """
        Log a loss once per connection and reason, naming the peer; the metrics count every one.
        """
        if reason not in self._reported:
            self._reported.add(reason)
            self._log.warn(message, listener=self._listener.name, peer=self._peer, **fields)

    def _pause(self) -> None:
        self._paused = True
        self._listener.count("paused")
        self.setTimeout(None)  # the daemon is the one not reading: that is no idle sender
        self.transport.pauseProducing()
        Deferred.fromCoroutine(self._listener.unsaturated()).addCallback(self._resume)

    def _resume(self, _: None) -> None:
        self._paused = False
        if not self._lost:
            self.setTimeout(self._listener.idle_timeout)
            self.transport.resumeProducing()


class IdleCloses:
    """
    One listener's idle closes: each is counted; the log gets the first at once and then at most one
    line per C{interval} seconds saying how many there were since, so that closing thousands of idle
    connections does not flood it.
    """

    _log = Logger()

    def __init__(self, listener: SyslogIntake, clock: IReactorTime, interval: float = 60.0) -> None:
        self._listener = listener
        self._clock = clock
        self._interval = interval
        self._unlogged = 0
        self._latest_peer = ""
        self._quiet_until = float("-inf")
        self._pending: IDelayedCall | None = None

    def closed(self, peer: str) -> None:
        self._listener.count("closed", 1, "idle")
        self._unlogged += 1
        self._latest_peer = peer
        if self._pending is not None:
            return
        wait = self._quiet_until - self._clock.seconds()
        if wait <= 0:
            self._flush()
        else:
            self._pending = self._clock.callLater(wait, self._flush)

    def _flush(self) -> None:
        self._pending = None
        self._log.info("{listener}: closed {count} connection(s) that sent nothing for {timeout} s, the "
                       "latest from {peer}", listener=self._listener.name, count=self._unlogged,
                       timeout=self._listener.idle_timeout, peer=self._latest_peer)
        self._unlogged = 0
        self._quiet_until = self._clock.seconds() + self._interval


class SyslogStreamFactory(Factory):
    def __init__(self, listener: SyslogIntake, clock: IReactorTime) -> None:
        self.listener = listener
        self._clock = clock
        self._idle = IdleCloses(listener, clock)

    def buildProtocol(self, addr: IAddress) -> SyslogStreamProtocol:
        protocol = SyslogStreamProtocol(self.listener, self._idle)
        protocol.factory = self
        protocol.callLater = self._clock.callLater  # type: ignore[method-assign]
        return protocol


class SyslogDatagramProtocol(DatagramProtocol):
    """
    UDP: one message per datagram, dropped and counted while the listener is saturated.

    The datagrams read in one reactor turn (Twisted reads many per wakeup) are submitted as one
    batch at the end of the turn: one publish and one sink write for all of them rather than one
    each, which is what lets a burst through without loss.
    """

    #: a batch is submitted at once when it reaches this size, without waiting for the turn to end
    MAX_BATCH = 1000

    def __init__(self, listener: SyslogIntake, clock: IReactorTime) -> None:
        self._listener = listener
        self._clock = clock
        self._pending: list[bytes] = []

    def datagramReceived(self, datagram: bytes, addr: tuple[str, int]) -> None:
        if len(datagram) > self._listener.max_frame_bytes:
            self._listener.discard("oversized")
        elif self._listener.saturated_with(len(self._pending)):
            self._listener.discard("saturated")
        elif datagram.strip():
            if not self._pending:
                self._clock.callLater(0, self._flush)
            self._pending.append(datagram)
            if len(self._pending) >= self.MAX_BATCH:
                self._flush()

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        if batch:
            self._listener.submit(batch)


def _host(address: IAddress) -> str:
    return getattr(address, "host", str(address))
