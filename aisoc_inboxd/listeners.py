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
    """

    tls = None

    def __init__(self, port: int, interface: str, protocol: Any, reactor: Any, name: str,
                 inherited_fd: int | None = None) -> None:
        self.description = f"udp:{port}:interface={interface}"
        self.name = name
        self.port: Any = None
        self._reactor = reactor
        self._protocol = protocol
        self._inherited_fd = inherited_fd
        self._number, self._interface = port, interface

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
        return self.port

    def stopService(self) -> Deferred[None] | None:
        Service.stopService(self)
        port, self.port = self.port, None
        return maybeDeferred(port.stopListening) if port is not None else None


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
