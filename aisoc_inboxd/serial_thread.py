"""
A thread of one's own for blocking calls that must run one at a time, in order.
"""
from __future__ import annotations

import queue
import threading
from typing import Any, Callable, ParamSpec, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.python.failure import Failure

P = ParamSpec("P")
R = TypeVar("R")


class SerialThread:
    """
    One thread that runs the calls handed to it, one at a time in the order handed, each result
    given back on the reactor's thread through a Deferred: what a one-thread L{ThreadPool
    <twisted.python.threadpool.ThreadPool>} and C{deferToThreadPool} do, with one C{SimpleQueue.put}
    per hand-over where the pool goes through its team of workers, their Python queues and locks
    and a context per call (~40 k instructions per flush under callgrind, the group commit's
    thread hop, once per fsync). Whatever must never run two at a time and may block (a group
    commit's fsync, an IMAP connector's session) gets one.
    """

    def __init__(self, reactor: IReactorFromThreads, name: str) -> None:
        self._reactor = reactor
        self._name = name
        #: (its Deferred, the call) in order; None to stop
        self._calls: queue.SimpleQueue[tuple[Deferred[Any], Callable[[], Any]] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self._name)
        self._thread.start()

    def stop(self) -> None:
        """
        Run what was handed over before, then end the thread (blocking until it has).
        """
        if self._thread is not None:
            self._calls.put(None)
            self._thread.join()
            self._thread = None

    def run(self, f: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> Deferred[R]:
        d: Deferred[R] = Deferred()
        self._calls.put((d, lambda: f(*args, **kwargs)))
        return d

    def _run(self) -> None:
        while (call := self._calls.get()) is not None:
            d, f = call
            try:
                result = f()
            except BaseException:
                self._reactor.callFromThread(d.errback, Failure())
            else:
                self._reactor.callFromThread(d.callback, result)
