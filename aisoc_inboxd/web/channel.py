"""
The HTTP/1.1 channel every listener of the daemon serves: deadlines for a request's head and body,
a bound on the head's size, and a JSON reply for every request it refuses before closing.

twisted.web's channel has one timeout, for idleness, which each byte resets: a client sending a
byte a second (slowloris) holds a connection forever. It drops a line longer than C{MAX_LENGTH}
with no reply and answers a malformed request with a bare C{400}. Here the head must arrive whole
within C{header_timeout} of its first byte and the body within C{body_timeout} of the head's end
(408 past either); a request line longer than C{max_header_bytes} is 414, a head larger than it or
with more than C{maxHeaders} (500) headers 431, anything twisted.web finds malformed 400. Each reply
is C{{"error": "…"}} and counted by reason.

A deadline is armed (a C{callLater}) only when a chunk of bytes leaves a head or body unfinished: a
small request that arrives whole in one read, the usual webhook, costs no timer to set and cancel.
The idle timeout (C{http.timeout}) is kept the same way: twisted.web cancels its timer when a
request is read whole, makes a new one when the reply is done, and moves it at every read; here one
timer per connection notes the time of the last activity, and when it fires it either times the
connection out or waits again for what is left of the period.

After such a reply the connection is half-closed: the reply and a FIN go out while what the client
is still sending is read and dropped, so a client that has not finished sending still gets the reply
(closing with unread bytes would send a reset, which can destroy the reply in flight). The client
closes in turn, or the connection is aborted after C{abortTimeout} seconds.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Callable

from twisted.internet.interfaces import IAddress, IDelayedCall, ISSLTransport, ITCPTransport
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel


@dataclass(frozen=True)
class ChannelLimits:
    """
    The C{http.header_timeout}, C{http.body_timeout} and C{http.max_header_bytes} settings.
    """

    header_timeout: float
    body_timeout: float
    max_header_bytes: int


#: told the reason of every request the channel refuses (for metrics)
OnRefused = Callable[[str], None]

#: each refusal by reason (the metric label): the status, and the message with the limits filled in
REFUSALS = {
    "header_timeout": (408, "request head not received within {header_timeout:g} s (http.header_timeout)"),
    "body_timeout": (408, "request body not received within {body_timeout:g} s (http.body_timeout)"),
    "request_line_too_long": (414, "request line longer than {max_header_bytes} bytes (http.max_header_bytes)"),
    "headers_too_large": (431, "request headers larger than {max_header_bytes} bytes (http.max_header_bytes)"),
    "too_many_headers": (431, "more than {max_headers} request headers"),
    "malformed_request": (400, "malformed HTTP request: the request line, a header or the body's framing "
                               "(Content-Length, chunks) is not valid HTTP/1.1"),
}
#: the reason phrases of the statuses sent before a request is read whole (RFC 9110's; twisted.web
#: has older ones and none for 431)
_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 413: b"Payload Too Large", 414: b"URI Too Long",
            431: b"Request Header Fields Too Large"}


class InboxChannel(HTTPChannel):
    """
    L{HTTPChannel} with the deadlines and limits of its site's C{limits}, reporting refusals to its
    site's C{on_refused}. HTTP/1.1 only: the daemon does not offer HTTP/2.
    """

    _log = Logger()
    #: the head or body deadline of the request being read, once armed
    _deadline: IDelayedCall | None = None
    #: the reason of the deadline the request being read is under, until it is armed at the end of
    #: the read that started it (the head's at its first byte, the body's at the head's end)
    _due: str | None = None
    _linger: IDelayedCall | None = None
    _host: IAddress | None = None
    #: set once a reply closed the connection: nothing more is read
    _closing = False
    #: the idle timer, and when the idle period started (the last read, or the last reply done)
    _idle_timer: IDelayedCall | None = None
    _idle_since = 0.0
    #: lines of the current request's head received so far, and their bytes
    _head_lines = 0
    _head_bytes = 0

    @property
    def _limits(self) -> ChannelLimits:
        return self.site.limits  # type: ignore[no-any-return]

    def connectionMade(self) -> None:
        self.MAX_LENGTH = self.totalHeadersSize = self._limits.max_header_bytes
        super().connectionMade()

    def getHost(self) -> IAddress:
        """
        The connection's local address, asked of the socket once: twisted.web asks for every request
        (C{getsockname}, a system call) and it cannot change while the connection lasts.
        """
        if self._host is None:
            self._host = self.transport.getHost()
        return self._host

    def setTimeout(self, period: float | None) -> float | None:
        """
        L{TimeoutMixin.setTimeout} (C{None} pauses the idle timeout while a request is being
        answered), without cancelling the timer: it finds the period off, or restarted, when it fires.
        """
        previous, self.timeOut = self.timeOut, period
        if period is not None:
            self._idle_since = self.site.reactor.seconds()
            timer = self._idle_timer
            if timer is None:
                self._idle_timer = self.callLater(period, self._idle_timer_fired)
            elif timer.getTime() > self._idle_since + period:  # a shorter period than the timer's
                timer.reset(period)
        return previous

    def resetTimeout(self) -> None:
        if self.timeOut is not None:
            self._idle_since = self.site.reactor.seconds()

    def _idle_timer_fired(self) -> None:
        self._idle_timer = None
        if self.timeOut is None:
            return  # paused or off: L{setTimeout} starts a timer again
        left = self._idle_since + self.timeOut - self.site.reactor.seconds()
        if left > 0:
            self._idle_timer = self.callLater(left, self._idle_timer_fired)
        else:
            self.timeoutConnection()

    def dataReceived(self, data: bytes) -> None:
        if self._due is None and self._deadline is None and not self._handlingRequest and data.lstrip(b"\r\n"):
            self._head_lines = self._head_bytes = 0
            self._due = "header_timeout"
        super().dataReceived(data)
        self._arm_deadline()

    def _arm_deadline(self) -> None:
        """
        Start the timer of the deadline due, if the read that made it due left its head or body
        unfinished (a finished one cleared it).
        """
        reason, self._due = self._due, None
        if reason is not None and not self._closing:
            limit = self._limits.header_timeout if reason == "header_timeout" else self._limits.body_timeout
            self._deadline = self.callLater(limit, self.refuse, reason)

    def lineReceived(self, line: bytes) -> None:
        """
        Each line of a head, against the head's limits. Called for every line of every request, so
        the size limit is read from the connection (C{totalHeadersSize}: C{max_header_bytes}, set when
        it was made; the site's limits never change) and twisted.web's method called by its class,
        without a property call and a C{super()} object per line.
        """
        if self._closing:
            return
        if line or self._head_lines:  # twisted.web skips one empty line before a request line
            self._head_lines += 1
            self._head_bytes += len(line)
            if self._head_bytes > self.totalHeadersSize:
                self.refuse("request_line_too_long" if self._head_lines == 1 else "headers_too_large")
                return
            if self._head_lines > self.maxHeaders + 1:  # the request line, then headers
                self.refuse("too_many_headers")
                return
        HTTPChannel.lineReceived(self, line)

    def lineLengthExceeded(self, line: bytes) -> None:
        self.refuse("request_line_too_long" if self._head_lines == 0 else "headers_too_large")

    def allHeadersReceived(self) -> None:
        self._cancel_deadline()
        super().allHeadersReceived()
        if self.length != 0 and not self._closing:
            self._due = "body_timeout"

    def allContentReceived(self) -> None:
        self._cancel_deadline()
        super().allContentReceived()

    def _respondToBadRequestAndDisconnect(self) -> None:
        # twisted.web's one exit for a request it cannot parse; it would answer a bare 400
        self.refuse("malformed_request")

    def refuse(self, reason: str) -> None:
        """
        Answer the refusal of L{REFUSALS} named C{reason}, count and log it, and close the connection.
        """
        if self._closing:
            return  # a reply is out already
        status, message = REFUSALS[reason]
        self.site.on_refused(reason)
        peer = self.transport.getPeer()
        self._log.info("{client} HTTP request refused: {status} {reason}", client=getattr(peer, "host", "-"),
                       status=status, reason=reason)
        limits = dataclasses.asdict(self._limits)
        self.reply_and_close(status, message.format(**limits, max_headers=self.maxHeaders))

    def reply_and_close(self, status: int, message: str) -> None:
        """
        Answer C{status} with C{{"error": message}} before any response to the request being read has
        started, then read and drop whatever else the client sends until it closes too.
        """
        if self._closing:
            return
        self._closing = True
        self._cancel_deadline()
        self.setTimeout(None)
        self.clearLineBuffer()
        body = json.dumps({"error": message}).encode("utf-8")
        self.transport.write(b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                             b"Connection: close\r\n\r\n%s" % (status, _REASONS[status], len(body), body))
        self.dataReceived = lambda data: None  # type: ignore[method-assign]
        self.transport.unregisterProducer()
        if ITCPTransport.providedBy(self.transport) and not ISSLTransport.providedBy(self.transport):
            self.transport.loseWriteConnection()
            self._linger = self.callLater(self.abortTimeout, self.transport.abortConnection)
        else:  # TLS cannot half-close
            self.transport.loseConnection()

    def _cancel_deadline(self) -> None:
        self._due = None
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def connectionLost(self, reason: Failure) -> None:
        self._cancel_deadline()
        if self._idle_timer is not None and self._idle_timer.active():
            self._idle_timer.cancel()
        self._idle_timer = None
        if self._linger is not None and self._linger.active():
            self._linger.cancel()
        super().connectionLost(reason)
