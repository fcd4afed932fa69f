"""
Group commit: many concurrent writers share one fsync.

A request waits for its events to be durable before it is acknowledged, and an fsync costs about as
much for one line as for ten thousand. So writes that arrive while a flush is running are queued and
flushed together by the next one, on a dedicated thread; each writer's Deferred fires when the flush
holding its lines has returned.
"""
from __future__ import annotations

from typing import Callable, Generic, ParamSpec, Sequence, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.python.failure import Failure

from aisoc_inboxd.serial_thread import SerialThread

Line = TypeVar("Line")
P = ParamSpec("P")
R = TypeVar("R")


class GroupCommitWriter(Generic[Line]):
    """
    Serialises calls of a blocking C{flush(lines)} onto one thread, batching what queues up meanwhile.

    A line is whatever C{flush} knows how to write: C{bytes} for a log file, or a C{(path, bytes)}
    pair for a writer that spreads lines over several files.

    @param flush: writes and fsyncs the lines; runs on the writer's thread, never concurrently.
    """

    def __init__(self, flush: Callable[[Sequence[Line]], None], reactor: IReactorFromThreads,
                 name: str) -> None:
        self._flush = flush
        self._thread = SerialThread(reactor, name)
        self._queued: list[tuple[Sequence[Line], Deferred[None]]] = []
        self._flushing = False
        self._idle: list[Deferred[None]] = []

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> Deferred[None]:
        """
        Fire once every queued line has been flushed, then stop the thread.
        """
        d = self.idle()
        d.addCallback(lambda _: self._thread.stop())
        return d

    def idle(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        if self._flushing or self._queued:
            self._idle.append(d)
        else:
            d.callback(None)
        return d

    def call(self, f: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> Deferred[R]:
        """
        Run C{f} on the writer's thread, so it never overlaps a flush (reading or deleting the files
        the flushes write). It is not ordered after lines queued but not yet flushing (a caller that
        needs them on disk waits on their Deferreds first), and L{stop} expects no call running.
        """
        return self._thread.run(f, *args, **kwargs)

    def write(self, lines: Sequence[Line]) -> Deferred[None]:
        """
        Queue C{lines}; the Deferred fires when they are durable, or fails with the flush's error.
        """
        d: Deferred[None] = Deferred()
        self._queued.append((lines, d))
        self._next()
        return d

    def _next(self) -> None:
        if self._flushing:
            return
        if not self._queued:
            waiting, self._idle = self._idle, []
            for d in waiting:
                d.callback(None)
            return
        batch, self._queued = self._queued, []
        lines = [line for chunk, _ in batch for line in chunk]
        self._flushing = True
        flushed = self._thread.run(self._flush, lines)
        flushed.addBoth(self._flushed, [d for _, d in batch])

    def _flushed(self, result: None | Failure, waiters: list[Deferred[None]]) -> None:
        self._flushing = False
        for d in waiters:
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(None)
        self._next()
