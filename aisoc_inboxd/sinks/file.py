"""
The embedded default sink: OCSF events appended as NDJSON under the state directory.

An event is durable once its line is written and the file fsynced; concurrent requests share one
fsync through L{GroupCommitWriter}. The live file is C{events.ndjson}; past C{max_bytes} it is renamed
with a UTC timestamp and a new one started, so a collector (or C{tail -F}) can follow it.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Sequence

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.logger import Logger

from aisoc_inboxd.sinks import SinkRecord, SinkUnavailable
from aisoc_inboxd.sinks.group_commit import GroupCommitWriter

LIVE_NAME = "events.ndjson"


class FileSink(Service):
    """
    Appends events to C{directory/events.ndjson}, fsynced before each write's Deferred fires.
    """

    name = "file-sink"
    _log = Logger()

    def __init__(self, directory: Path, reactor: IReactorFromThreads,
                 max_bytes: int = 256 * 1024 * 1024) -> None:
        self._directory = directory
        self._max_bytes = max_bytes
        self._writer = GroupCommitWriter(self._append, reactor, name="file-sink")
        self._fd: int | None = None
        self._healthy = True

    @property
    def path(self) -> Path:
        return self._directory / LIVE_NAME

    def startService(self) -> None:
        self._directory.mkdir(parents=True, exist_ok=True)
        self._open()
        self._writer.start()
        super().startService()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        d = self._writer.stop()
        d.addCallback(lambda _: self._close())
        return d

    def ready(self) -> bool:
        return self.running and self._healthy

    def write(self, records: Sequence[SinkRecord]) -> Deferred[None]:
        d = self._writer.write([r.value + b"\n" for r in records])
        d.addErrback(self._unavailable)
        return d

    def _unavailable(self, failure: object) -> None:
        self._healthy = False
        self._log.failure("cannot append to {path}", failure=failure, path=str(self.path))
        raise SinkUnavailable(f"cannot write the event log {self.path}")

    def _open(self) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _append(self, lines: Sequence[bytes]) -> None:
        """
        Runs on the writer thread: one write, one fsync, then rotate if the file grew too big.
        """
        assert self._fd is not None
        data = b"".join(lines)
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        os.fsync(self._fd)
        self._healthy = True
        if os.fstat(self._fd).st_size >= self._max_bytes:
            self._rotate()

    def _rotate(self) -> None:
        now_ns = time.time_ns()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now_ns / 1e9))
        self._close()
        os.replace(self.path, self._directory / f"events-{stamp}-{now_ns % 10**9:09d}.ndjson")
        dir_fd = os.open(self._directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self._open()
