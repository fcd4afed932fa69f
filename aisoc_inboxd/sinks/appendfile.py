"""
An append-only file whose appends are all-or-nothing, for logs a reader parses record by record.

A sender is acknowledged only once its bytes are fsynced, and a reader must be able to parse every
acknowledged record. A failed append (a short write then ENOSPC, EIO on write or fsync) would leave
part of a record at the end of the file, and the next acknowledged one glued to it; so a failed
append is cut back out (truncate to the last good offset, fsync) before the error is raised. If
even the cut fails, the file is marked torn and every later append tries the cut first, failing
until it succeeds: nothing is ever written after bytes that were not acknowledged.

Only the writer's thread calls these methods.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path


class AppendFile:
    """
    An open file appended to with L{append}; C{size} is the end of its last acknowledged append.
    """

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd
        self.size = os.fstat(fd).st_size
        self._torn = False

    @classmethod
    def open(cls, path: Path) -> AppendFile:
        """
        Open C{path} for appending, created when missing; the caller makes sure it has no torn tail.
        """
        return cls(path, os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640))

    def append(self, data: bytes) -> None:
        """
        Write all of C{data} and fsync, or leave the file as it was and raise the C{OSError}.
        """
        if self._torn:
            self._cut()
        try:
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                if written == 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                view = view[written:]
            os.fsync(self._fd)
        except OSError:
            self._torn = True
            try:
                self._cut()
            except OSError:
                pass  # still torn: the next append tries again before writing anything
            raise
        self.size += len(data)

    def close(self) -> None:
        os.close(self._fd)

    def _cut(self) -> None:
        os.ftruncate(self._fd, self.size)
        os.fsync(self._fd)
        self._torn = False
