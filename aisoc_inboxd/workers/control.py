"""
The control channel between the daemon and one worker: AMP over a UNIX socketpair whose worker end
the worker inherits. The worker says when it serves and leases rate-limit tokens from the daemon,
which holds the one bucket per tenant; the worker sees the daemon die as the channel closing.
"""
from __future__ import annotations

import socket
from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorSocket, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols import amp
from twisted.python.failure import Failure

from aisoc_inboxd.ratelimit import RateLimiter

#: the file descriptor a worker finds its end of the control channel on
WORKER_FD = 3
#: seconds a worker waits for the daemon to answer a lease
LEASE_TIMEOUT = 10.0


class Ready(amp.Command):
    """
    Worker to daemon: every inherited socket is being served.
    """


class LeaseRate(amp.Command):
    """
    Worker to daemon: take up to C{want} requests from C{tenant}'s rate limit.
    """

    arguments = [(b"tenant", amp.Unicode()), (b"want", amp.Integer())]
    response = [(b"granted", amp.Integer()), (b"wait", amp.Float())]


class DaemonSide(amp.AMP):
    """
    The daemon's end of one worker's channel.
    """

    def __init__(self, limiter: RateLimiter, on_ready: Callable[[], None]) -> None:
        super().__init__()
        self._limiter = limiter
        self._on_ready = on_ready

    @Ready.responder
    def ready(self) -> dict[str, Any]:
        self._on_ready()
        return {}

    @LeaseRate.responder
    def lease(self, tenant: str, want: int) -> dict[str, Any]:
        granted, wait = self._limiter.lease(tenant, want)
        return {"granted": granted, "wait": wait}


class WorkerSide(amp.AMP):
    """
    The worker's end: C{on_lost} runs when the daemon has gone (or closed the channel).
    """

    def __init__(self, on_lost: Callable[[], None], clock: IReactorTime) -> None:
        super().__init__()
        self._on_lost = on_lost
        self._clock = clock

    def lease(self, tenant: str, want: int) -> Deferred[tuple[int, float]]:
        """
        Fails after L{LEASE_TIMEOUT}: a daemon that cannot answer that long is treated as gone, so
        requests do not hang on it (the worker's limiter then counts on its own).
        """
        d = self.callRemote(LeaseRate, tenant=tenant, want=want)
        d.addTimeout(LEASE_TIMEOUT, self._clock)
        return d.addCallback(lambda reply: (reply["granted"], reply["wait"]))

    def ready(self) -> Deferred[Any]:
        return self.callRemote(Ready)

    def connectionLost(self, reason: Failure) -> None:
        super().connectionLost(reason)
        self._on_lost()


def socket_pair() -> tuple[socket.socket, socket.socket]:
    """
    The daemon's end and the worker's end, non-blocking, as the reactor needs an adopted socket.
    """
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    ours.setblocking(False)
    theirs.setblocking(False)
    return ours, theirs


def adopt(reactor: IReactorSocket, fd: int, protocol: Protocol) -> None:
    """
    Run C{protocol} on the connected UNIX socket C{fd}; the reactor keeps a duplicate, so the
    caller closes C{fd}.
    """
    factory = Factory()
    factory.buildProtocol = lambda address: protocol  # type: ignore[method-assign]
    reactor.adoptStreamConnection(fd, socket.AF_UNIX, factory)
