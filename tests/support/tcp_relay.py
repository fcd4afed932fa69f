"""
A TCP relay a test puts between the daemon and a server (the Kafka broker, PostgreSQL) to break the
network in the ways networks break: refuse (L{Relay.cut}), go silent for everyone for a while
(L{Relay.stall}), or go silent for good on the connections open now while new ones pass
(L{Relay.forget}, a NAT or firewall that dropped their state).

Silent means the bytes are held, never refused: the relay's kernel still acknowledges them, so the
sender's TCP sees a healthy peer that never answers — what only an application-level deadline notices.
Plus the small socket helpers the tests share. (L{tests.support.relay} is the other kind of relay:
a syslog daemon forwarding to ours.)
"""
from __future__ import annotations

import socket
import threading
import time

from tests.support.ports import free_port

__all__ = ["Relay", "free_port", "wait_for_port"]


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class _Link:
    """
    One relayed connection: the client's socket and the upstream one.
    """

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.sockets = (client, upstream)
        self.forgotten = False
        self.closed = False


class Relay:
    """
    A TCP relay from C{127.0.0.1:port} to C{127.0.0.1:upstream_port}.

    L{cut} closes the listening socket and every relayed connection, so clients see connection
    refused, as when the server's host is down; L{reopen} listens on the same port again.
    L{stall} holds every byte of every connection, open or new, until L{resume}. L{forget} holds
    the bytes of the connections open now for good (until L{cut}); later connections are relayed.
    """

    def __init__(self, upstream_port: int, port: int | None = None) -> None:
        self.upstream_port = upstream_port
        self.port = port or free_port()
        self._gate = threading.Condition()
        self._listener: socket.socket | None = None
        self._links: set[_Link] = set()
        self._stalled = False

    def reopen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), name="relay-accept",
                         daemon=True).start()

    def cut(self) -> None:
        with self._gate:
            listener, self._listener = self._listener, None
            links, self._links = self._links, set()
            for link in links:
                link.closed = True
            self._gate.notify_all()
        if listener is not None:
            listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for link in links:
            for s in link.sockets:
                _close(s)

    def stall(self) -> None:
        with self._gate:
            self._stalled = True

    def resume(self) -> None:
        with self._gate:
            self._stalled = False
            self._gate.notify_all()

    def forget(self) -> None:
        with self._gate:
            for link in self._links:
                link.forgotten = True

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            link = _Link(client, upstream)
            with self._gate:
                if self._listener is not listener:
                    _close(client)
                    _close(upstream)
                    return
                self._links.add(link)
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(link, src, dst), name="relay-pump",
                                 daemon=True).start()

    def _pump(self, link: _Link, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if not self._may_forward(link):
                    return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._gate:
                link.closed = True
                self._links.discard(link)
                self._gate.notify_all()
            for s in link.sockets:
                _close(s)

    def _may_forward(self, link: _Link) -> bool:
        """
        Wait while the link is silent; C{False} once it is closed instead.
        """
        with self._gate:
            self._gate.wait_for(lambda: link.closed or not (self._stalled or link.forgotten))
            return not link.closed


def _close(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    s.close()
