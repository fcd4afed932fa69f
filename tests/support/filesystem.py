"""
Disks that fail. A real filesystem that fills: a small tmpfs mounted for one test (root only), and a
filler file that takes all its free space until the test gives some back. And, where a real disk
cannot fail on cue, L{FailingDisk}: C{os.write} and C{os.fsync} failing for the files a test picks.
"""
from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

_CHUNK = 4096


def mount_small_tmpfs(directory: Path, size: int) -> Iterator[Path]:
    """
    Mount a tmpfs of C{size} bytes on C{directory} (created) for the duration of the generator; the
    test is skipped, saying why, when this machine does not let us mount.
    """
    directory.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CAP_SYS_ADMIN); the injected-os.write tests "
                    "cover the same failure without a real filesystem")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(directory)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}); the injected-os.write tests "
                    "cover the same failure without a real filesystem")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "--lazy", str(directory)], check=True)


class Filler:
    """
    A file that takes a filesystem's free space (L{fill}) and gives it back (L{free}).
    """

    def __init__(self, directory: Path) -> None:
        self.path = directory / "filler"

    def fill(self) -> None:
        """
        Append to the filler until the filesystem has no byte left.
        """
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            while True:
                os.write(fd, b"\0" * _CHUNK)
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
        finally:
            os.close(fd)

    def free(self, size: int | None = None) -> None:
        """
        Give back C{size} bytes (rounded up to whole pages), or everything.
        """
        if size is None:
            self.path.unlink()
            return
        left = max(0, self.path.stat().st_size - -(-size // _CHUNK) * _CHUNK)
        os.truncate(self.path, left)


def on_file(path: Path) -> Callable[[int], bool]:
    """
    Whether a file descriptor is open on C{path} (by inode, without reaching into whoever opened it).
    """
    inode = path.stat().st_ino
    return lambda fd: os.fstat(fd).st_ino == inode


def _path_of(fd: int) -> Path:
    return Path(os.readlink(f"/proc/self/fd/{fd}"))


def named(suffix: str) -> Callable[[int], bool]:
    """
    Whether a file descriptor is open on a file whose name ends with C{suffix}.
    """
    return lambda fd: _path_of(fd).name.endswith(suffix)


def in_directory(directory: Path) -> Callable[[int], bool]:
    """
    Whether a file descriptor is open on a file in C{directory}: a whole disk failing.
    """
    return lambda fd: _path_of(fd).parent == directory


class FailingDisk:
    """
    C{os.write} and C{os.fsync} as a disk that fails, for the file descriptors C{target} picks, in one of
    the ways of L{MODES}, until L{heal}; other descriptors (the reactor's own) are served as usual.
    """

    MODES = ("short write, then ENOSPC", "ENOSPC", "EIO on write", "EIO on fsync")

    def __init__(self, monkeypatch: pytest.MonkeyPatch, target: Callable[[int], bool], mode: str) -> None:
        assert mode in self.MODES
        self._write, self._fsync = os.write, os.fsync
        self._target = target
        self._mode = mode
        #: whether a write or fsync failed yet
        self.failed = False
        monkeypatch.setattr(os, "write", self.write)
        monkeypatch.setattr(os, "fsync", self.fsync)

    def write(self, fd: int, data: Any) -> int:
        if self._mode in ("healthy", "EIO on fsync") or not self._target(fd):
            return self._write(fd, data)
        self.failed = True
        if self._mode == "short write, then ENOSPC":
            self._mode = "ENOSPC"
            return self._write(fd, bytes(data[:len(data) // 2]))
        code = errno.ENOSPC if self._mode == "ENOSPC" else errno.EIO
        raise OSError(code, os.strerror(code))

    def fsync(self, fd: int) -> None:
        if self._mode == "EIO on fsync" and not self.failed and self._target(fd):
            self.failed = True
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        self._fsync(fd)

    def heal(self) -> None:
        self._mode = "healthy"
