"""
Signing secrets at rest: sealed with Fernet under a key kept in a file beside the daemon's state, so
a copy of the database alone (a backup, a replica, a stolen SQLite file) does not reveal them.
"""
from __future__ import annotations

import os

from cryptography.fernet import Fernet, InvalidToken

from aisoc_inboxd.keyfiles import KeyFileError, read_or_create
from aisoc_inboxd.store import StoreError


class SecretBox:
    """
    Seals and opens signing secrets with one Fernet key (AES-128-CBC + HMAC-SHA256, authenticated).
    """

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
        Losing the file makes every stored signing secret unreadable, so back it up with the database.
        """
        try:
            key = read_or_create(path, Fernet.generate_key, "secret key")
        except KeyFileError as e:
            raise StoreError(str(e)) from e
        try:
            return cls(key)
        except StoreError as e:
            raise StoreError(f"{path} does not hold a Fernet key") from e

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
