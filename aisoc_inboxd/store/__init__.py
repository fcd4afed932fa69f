"""
The token store: one interface, two implementations (SQLite for the embedded default, PostgreSQL for
production) that pass one contract test suite.

Every method returns a Deferred; the blocking database work runs on the store's own threads.
Tenant-scoped methods run inside that tenant's context (PostgreSQL row-level security), and the
ingest path only ever calls L{Store.resolve}, which can read one active token by fingerprint and
nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from twisted.internet.defer import Deferred


@dataclass(frozen=True)
class TokenRecord:
    """
    One minted inbox token as stored: never the token itself, only its SHA-256 fingerprint.

    @ivar signing_secret: the HMAC secret set at mint, decrypted; C{None} when unsigned.
    @ivar created_at/rotated_at/revoked_at: epoch seconds (float); a token resolves only while
        both C{rotated_at} and C{revoked_at} are C{None}.
    """

    fingerprint: str
    tenant_id: str
    template_id: str
    label: str | None = None
    signing_secret: bytes | None = None
    created_at: float = 0.0
    rotated_at: float | None = None
    revoked_at: float | None = None

    @property
    def active(self) -> bool:
        return self.rotated_at is None and self.revoked_at is None


class StoreError(Exception):
    """
    The store cannot be reached or used (connection refused, bad DSN, migration failure).
    """


class Store(Protocol):
    """
    What the daemon needs from a token store. Implementations are Services: the connection pool is
    built in C{startService} and closed in C{stopService}.
    """

    def startService(self) -> None: ...

    def stopService(self) -> Deferred[None] | None: ...

    def upgrade(self) -> Deferred[int]:
        """
        Apply pending versioned migrations; fire with the schema version now in force.
        """

    def resolve(self, fingerprint: str) -> Deferred[TokenRecord | None]:
        """
        The ingest path: the active token with this fingerprint, or C{None}.
        """

    def insert_token(self, record: TokenRecord) -> Deferred[None]:
        """
        Store a freshly minted token in C{record.tenant_id}'s context.
        """

    def list_tokens(self, tenant_id: str) -> Deferred[list[TokenRecord]]:
        """
        Every token of one tenant (active, rotated and revoked), oldest first.
        """

    def rotate_token(self, tenant_id: str, fingerprint: str, new: TokenRecord,
                     now: float) -> Deferred[bool]:
        """
        In one transaction: mark the active token C{fingerprint} of this tenant rotated at C{now} and
        insert C{new} (same tenant; template/label/secret chosen by the caller). C{False} when no such
        active token exists in this tenant.
        """

    def revoke_token(self, tenant_id: str, fingerprint: str, now: float) -> Deferred[bool]:
        """
        Mark the active token revoked at C{now}; C{False} when this tenant has no such active token.
        """
