"""
Signing secrets at rest: sealed with Fernet under a key kept in a file beside the daemon's state, so
a copy of the database alone (a backup, a replica, a stolen SQLite file) does not reveal them.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from twisted.logger import Logger

from aisoc_inboxd.store import StoreError


class SecretBox:
    """
    Seals and opens signing secrets with one Fernet key (AES-128-CBC + HMAC-SHA256, authenticated).
    """

    _log = Logger()

    def __init__(self, key: bytes) -> None:
        """
        @param key: a Fernet key (32 url-safe base64-encoded bytes), e.g. from L{Fernet.generate_key}.
        @raise StoreError: when C{key} is not a Fernet key.
        """
        try:
            self._fernet = Fernet(key)
        except ValueError as e:
            raise StoreError("the secret key is not a Fernet key (32 url-safe base64 bytes)") from e

    @classmethod
    def from_key_file(cls, path: str | os.PathLike[str]) -> SecretBox:
        """
        Read the key at C{path}, creating it (mode 0600) with a fresh key when it does not exist.

        Called once while the daemon is configured, before the reactor runs: it does blocking file
        I/O. Losing the file makes every stored signing secret unreadable, so back it up.
        """
        key_path = Path(path)
        key = Fernet.generate_key()
        try:
            fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return cls._read(key_path)
        except OSError as e:
            raise StoreError(f"cannot create the secret key file {key_path}: {e.strerror}") from e
        with os.fdopen(fd, "wb") as f:
            f.write(key + b"\n")
            f.flush()
            os.fsync(f.fileno())
        cls._log.info("created secret key file {path}; back it up with the database",
                      path=str(key_path))
        return cls(key)

    @classmethod
    def _read(cls, key_path: Path) -> SecretBox:
        try:
            mode = key_path.stat().st_mode
            key = key_path.read_bytes().strip()
        except OSError as e:
            raise StoreError(f"cannot read the secret key file {key_path}: {e.strerror}") from e
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            cls._log.warn("secret key file {path} is accessible to group or others (mode {mode:o})",
                          path=str(key_path), mode=stat.S_IMODE(mode))
        try:
            return cls(key)
        except StoreError as e:
            raise StoreError(f"{key_path} does not hold a Fernet key") from e

    def seal(self, plaintext: bytes) -> bytes:
        """
        Encrypt and authenticate C{plaintext}; the result is what the store persists.
        """
        return self._fernet.encrypt(plaintext)

    def open(self, sealed: bytes) -> bytes:
        """
        The plaintext of a value from L{seal}.

        @raise StoreError: when the value was sealed under another key or was altered.
        """
        try:
            return self._fernet.decrypt(sealed)
        except InvalidToken as e:
            raise StoreError("cannot decrypt a stored signing secret: it was sealed with a different "
                             "key file, or altered") from e
