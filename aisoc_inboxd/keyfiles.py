"""
Key files in the state directory (the Fernet key for signing secrets, the admin API key): read when
present, created once with mode 0600 when not.

Called while the daemon is configured, before the reactor runs: the file I/O here blocks.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Callable

from twisted.logger import Logger

_log = Logger()


class KeyFileError(Exception):
    pass


def read_or_create(path: str | os.PathLike[str], generate: Callable[[], bytes], what: str) -> bytes:
    """
    The stripped contents of C{path}; when it does not exist, C{generate()} is written there first
    (exclusively, so two processes starting at once agree on one key).
    """
    key_path = Path(path)
    key = generate()
    try:
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read(key_path, what)
    except OSError as e:
        raise KeyFileError(f"cannot create the {what} file {key_path}: {e.strerror}") from e
    with os.fdopen(fd, "wb") as f:
        f.write(key + b"\n")
        f.flush()
        os.fsync(f.fileno())
    _log.info("created {what} file {path}", what=what, path=str(key_path))
    return key


def _read(key_path: Path, what: str) -> bytes:
    try:
        mode = key_path.stat().st_mode
        key = key_path.read_bytes().strip()
    except OSError as e:
        raise KeyFileError(f"cannot read the {what} file {key_path}: {e.strerror}") from e
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        _log.warn("{what} file {path} is accessible to group or others (mode {mode:o})",
                  what=what, path=str(key_path), mode=stat.S_IMODE(mode))
    if not key:
        raise KeyFileError(f"the {what} file {key_path} is empty")
    return key
