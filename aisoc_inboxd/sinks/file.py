"""
The embedded default sink: OCSF events appended as NDJSON under the state directory.

An event is durable once its line is written and the file fsynced; concurrent requests share one
fsync through L{GroupCommitWriter}. The live file is C{events.ndjson}; past C{max_bytes} it is renamed
with a UTC timestamp and a new one started, so a collector (or C{tail -F}) can follow it.

The log stays parseable whatever the disk does: a write is all-or-nothing (L{AppendFile} cuts a
failed one back out, and the senders get 503), and a last line without its newline, left by a crash
mid-write, is cut at start-up so the next line cannot be glued to it. L{DiskHealth} tells
C{/readyz}, the status page and C{/metrics} when the disk is full or failing.
"""
from __future__ import annotations

import operator
import os
import time
from pathlib import Path
from typing import Any, Sequence

from prometheus_client import CollectorRegistry
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from aisoc_inboxd.sinks import IEventLog, SinkRecord
from aisoc_inboxd.sinks.appendfile import AppendFile
from aisoc_inboxd.sinks.group_commit import GroupCommitWriter
from aisoc_inboxd.sinks.health import DiskHealth

LIVE_NAME = "events.ndjson"

_value = operator.attrgetter("value")

#: bytes read at a time, from the end, looking for the last newline of a torn log
_TAIL_CHUNK = 64 * 1024


@implementer(IEventLog)
class FileSink(Service):
    """
    Appends events to C{directory/events.ndjson}, fsynced before each write's Deferred fires.

    @param reactor: the reactor the writer thread hands results to, and the clock of the disk checks.
    @param registry: where the sink's metrics are registered (the daemon's, never the global one).
    """

    name = "file-sink"
    _log = Logger()

    def __init__(self, directory: Path, reactor: Any, max_bytes: int = 256 * 1024 * 1024, *,
                 registry: CollectorRegistry) -> None:
        self._directory = directory
        self._max_bytes = max_bytes
        self._writer: GroupCommitWriter[bytes] = GroupCommitWriter(self._append, reactor, name="file-sink")
        self.disk = DiskHealth("the event log", "file", directory, self._writer, reactor)
        self.disk.register(registry)
        self._reactor = reactor
        #: owned by the writer thread: the live file, and whether its last rotation failed
        self._file: AppendFile | None = None
        self._rotation_failing = False

    @property
    def path(self) -> Path:
        return self._directory / LIVE_NAME

    def startService(self) -> None:
        self._directory.mkdir(parents=True, exist_ok=True)
        cut = cut_torn_tail(self.path)
        if cut:
            self._log.warn("{path} ended in a torn line (a crash mid-write): cut its last {bytes} bytes, "
                           "which no sender was acknowledged for", path=str(self.path), bytes=cut)
        self._file = AppendFile.open(self.path)
        self._writer.start()
        self.disk.start()
        super().startService()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        d = self.disk.stop()
        d.addCallback(lambda _: self._writer.stop())
        d.addCallback(lambda _: self._close())
        return d

    def not_ready(self) -> str | None:
        if not self.running:
            return "the file sink is stopped"
        return self.disk.problem()

    def write(self, records: Sequence[SinkRecord]) -> Deferred[None]:
        # one chunk of lines per write, joined in one C loop, rather than one bytes per event
        d = self._writer.write([b"\n".join([*map(_value, records), b""])] if records else [])
        d.addCallbacks(self._written, self._failed)
        return d

    def _written(self, _: None) -> None:
        self.disk.succeeded()

    def _failed(self, failure: Failure) -> None:
        failure.trap(OSError)
        raise self.disk.failed(failure.value)

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _append(self, chunks: Sequence[bytes]) -> None:
        """
        Runs on the writer thread: the chunks of lines of the writes queued meanwhile in one
        all-or-nothing write and fsync, then rotate if the file grew too big.
        """
        assert self._file is not None
        self._file.append(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        if self._file.size >= self._max_bytes:
            try:
                self._rotate(self._file)
            except OSError as e:
                # The lines are durable: the write stands, and the next one tries to rotate again.
                if not self._rotation_failing:
                    self._reactor.callFromThread(
                        self._log.warn, "cannot rotate {path} past {max_bytes} bytes ({error}); it keeps growing "
                        "until a rotation succeeds", path=str(self.path), max_bytes=self._max_bytes, error=str(e))
                self._rotation_failing = True
            else:
                self._rotation_failing = False

    def _rotate(self, live: AppendFile) -> None:
        """
        Rename the live file with a timestamp and start a new one; on failure the live file stays as it was.
        """
        now_ns = time.time_ns()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now_ns / 1e9))
        rotated = self._directory / f"events-{stamp}-{now_ns % 10**9:09d}.ndjson"
        os.replace(self.path, rotated)
        try:
            new = AppendFile.open(self.path)
        except OSError:
            os.replace(rotated, self.path)
            raise
        live.close()
        self._file = new
        dir_fd = os.open(self._directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def cut_torn_tail(path: Path) -> int:
    """
    Cut a last line that has no newline off the NDJSON log at C{path} (fsynced); returns how many bytes
    were cut, 0 when the log ends with a whole line or does not exist.
    """
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return 0
    try:
        size = end = os.fstat(fd).st_size
        while end > 0:
            start = max(0, end - _TAIL_CHUNK)
            newline = os.pread(fd, end - start, start).rfind(b"\n")
            if newline >= 0:
                end = start + newline + 1
                break
            end = start
        if end < size:
            os.ftruncate(fd, end)
            os.fsync(fd)
        return size - end
    finally:
        os.close(fd)
