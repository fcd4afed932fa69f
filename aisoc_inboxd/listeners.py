"""
The daemon's listening ports as services: a stream endpoint (TCP, or TLS with a certificate that a
reload can swap), a UDP port, and the drain that sits between them and the sink at shutdown.

Each binds when the daemon calls L{Listener.listen} (after the store is upgraded) rather than in
C{startService}, so a failure to bind is the daemon's to report; a worker process serves the
listening socket the daemon bound and passed to it instead of binding its own.
"""
from __future__ import annotations

import dataclasses
import socket
import sys
from pathlib import Path
from typing import Any, Sequence

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort, IProtocolFactory
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory

from aisoc_inboxd.inflight import InFlight
from aisoc_inboxd.tls import ReloadableTLS, split_tls_endpoint

_log = Logger()

#: seconds a shutdown waits for in-flight requests before the sink is stopped
DRAIN_TIMEOUT = 30.0

#: the largest syslog datagram read whole
MAX_DATAGRAM = 65535


class Listener(Service):
    """
    One listening endpoint from an endpoint string. Binding failures (port in use, unreadable PEM)
    are fatal: the daemon stops rather than run deaf.
    """

    def __init__(self, description: str, factory: IProtocolFactory, reactor: Any, name: str,
                 client_ca: Path | None = None, inherited_fd: int | None = None) -> None:
        """
        @param client_ca: with an C{ssl:} endpoint, require client certificates issued by this CA.
        @param inherited_fd: serve this listening socket, bound by the daemon, instead of binding
            C{description} (a worker process).
        """
        self.description = description
        self.name = name
        self._reactor = reactor
        self._inherited_fd = inherited_fd
        self.port: IListeningPort | None = None
        self.tls: ReloadableTLS | None = None
        tls_split = split_tls_endpoint(description)
        if tls_split is None:
            self._endpoint_description, self._factory = description, factory
        else:
            # ssl: listens as tcp: with TLS wrapped here, so SIGHUP can swap the certificate
            self._endpoint_description, files = tls_split
            self.tls = ReloadableTLS(dataclasses.replace(files, client_ca=client_ca))
            self._factory = TLSMemoryBIOFactory(self.tls, False, factory)

    def listen(self) -> Deferred[IListeningPort]:
        Service.startService(self)
        if self._inherited_fd is not None:
            return maybeDeferred(self._reactor.adoptStreamPort, self._inherited_fd,
                                 _family(self._inherited_fd), self._factory).addCallback(self._bound)
        d = serverFromString(self._reactor, self._endpoint_description).listen(self._factory)
        d.addCallback(self._bound)
        return d

    def _bound(self, port: IListeningPort) -> IListeningPort:
        self.port = port
        _log.info("{name} listening on {address}", name=self.name, address=str(port.getHost()))
        return port

    def stopService(self) -> Deferred[None] | None:
        Service.stopService(self)
        if self.port is not None:
            port, self.port = self.port, None
            return maybeDeferred(port.stopListening)
        return None


class DatagramListener(Service):
    """
    A UDP port, shaped like L{Listener} so it binds and closes with the others (Twisted has no
    datagram endpoint strings).

    Its receive buffer is what absorbs a burst while the reactor is busy elsewhere: datagrams that
    do not fit are dropped by the kernel, uncounted by us. So the buffer is sized on every port
    served, bound or adopted (a worker's socket is the daemon's, so asking again changes nothing),
    and the process that binds it logs what the kernel granted.
    """

    tls = None

    def __init__(self, port: int, interface: str, protocol: Any, reactor: Any, name: str,
                 inherited_fd: int | None = None, receive_buffer_bytes: int = 0) -> None:
        """
        @param receive_buffer_bytes: the C{SO_RCVBUF} to ask for; 0 leaves the kernel's default.
        """
        self.description = f"udp:{port}:interface={interface}"
        self.name = name
        self.port: Any = None
        self._reactor = reactor
        self._protocol = protocol
        self._inherited_fd = inherited_fd
        self._number, self._interface = port, interface
        self._receive_buffer = receive_buffer_bytes

    def listen(self) -> Deferred[Any]:
        Service.startService(self)
        if self._inherited_fd is not None:
            fd = self._inherited_fd
            d = maybeDeferred(self._reactor.adoptDatagramPort, fd, _family(fd), self._protocol, MAX_DATAGRAM)
        else:
            d = maybeDeferred(self._reactor.listenUDP, self._number, self._protocol, self._interface,
                              MAX_DATAGRAM)
        return d.addCallback(self._bound)

    def _bound(self, port: Any) -> Any:
        self.port = port
        _log.info("{name} listening on {address}", name=self.name, address=str(self.port.getHost()))
        if self._receive_buffer:
            granted = _size_receive_buffer(port.socket, self._receive_buffer)
            if self._inherited_fd is None:
                _report_receive_buffer(self.name, self._receive_buffer, granted)
        return self.port

    def stopService(self) -> Deferred[None] | None:
        Service.stopService(self)
        port, self.port = self.port, None
        return maybeDeferred(port.stopListening) if port is not None else None


#: Linux reports (and reserves) twice the C{SO_RCVBUF} it was set to, the half on top for its own
#: bookkeeping
_KERNEL_DOUBLES = sys.platform.startswith("linux")


def _size_receive_buffer(sock: socket.socket, requested: int) -> int:
    """
    Ask for a receive buffer of C{requested} bytes on C{sock} and return the size the kernel set:
    C{requested}, or less where it caps it (Linux: at C{net.core.rmem_max}, silently).
    """
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, requested)
    reported = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    return reported // 2 if _KERNEL_DOUBLES else reported


def _report_receive_buffer(name: str, requested: int, granted: int) -> None:
    """
    Log the granted receive buffer once at start, and warn with the remedy when the kernel capped it.
    """
    if granted >= requested:
        _log.info("{name}: receive buffer set to {granted} bytes", name=name, granted=granted)
    else:
        _log.warn("{name}: asked for a receive buffer of {requested} bytes, the kernel set {granted} (its "
                  "net.core.rmem_max); a burst beyond it is dropped by the kernel, uncounted. Raise the cap "
                  "with 'sysctl -w net.core.rmem_max={requested}' and a file in /etc/sysctl.d to keep it",
                  name=name, requested=requested, granted=granted)


def _family(fd: int) -> socket.AddressFamily:
    """
    The address family of an inherited socket, which the reactor must be told when adopting it.
    """
    sock = socket.socket(fileno=fd)
    try:
        return sock.family
    finally:
        sock.detach()


class DrainInFlight(Service):
    """
    Sits between the listeners and the sink: stopping it waits for in-flight requests to finish.
    """

    name = "drain"

    def __init__(self, inflight: InFlight) -> None:
        self._inflight = inflight

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        d = self._inflight.drained(DRAIN_TIMEOUT)
        d.addErrback(lambda f: _log.warn("shutdown: {n} requests still in flight after {t}s",
                                         n=len(self._inflight), t=DRAIN_TIMEOUT))
        return d


def listening(listeners: Sequence[Listener | DatagramListener]) -> str:
    """
    The service manager's status line: where each listener listens.
    """
    return "listening on " + ", ".join(
        f"{listener.name} {listener.port.getHost().port}" for listener in listeners if listener.port)
