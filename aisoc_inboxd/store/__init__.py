"""
The token store: one interface, two implementations (SQLite for the embedded default, PostgreSQL for
production) that pass one contract test suite.

Every method returns a Deferred; the blocking database work runs on the store's own threads.
Tenant-scoped methods run inside that tenant's context (PostgreSQL row-level security), and the
ingest path only ever calls L{Store.resolve}, which can read one active token by fingerprint and
nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

from twisted.internet.defer import Deferred


@dataclass(frozen=True)
class TokenRecord:
    """
    One minted inbox token as stored: never the token itself, only its SHA-256 fingerprint.

    @ivar signing_secret: the HMAC secret set at mint, decrypted; C{None} when unsigned.
    @ivar created_at/rotated_at/revoked_at: epoch seconds (float); a token resolves only while
        both C{rotated_at} and C{revoked_at} are C{None}.
    @ivar hec_acks: Splunk HEC indexer acknowledgement (ackId, channels) on for this token.
    """

    fingerprint: str
    tenant_id: str
    template_id: str
    label: str | None = None
    signing_secret: bytes | None = None
    created_at: float = 0.0
    rotated_at: float | None = None
    revoked_at: float | None = None
    hec_acks: bool = False

    @property
    def active(self) -> bool:
        return self.rotated_at is None and self.revoked_at is None

    @property
    def state(self) -> str:
        """
        C{active}, C{rotated} or C{revoked}, as listings show it.
        """
        return "revoked" if self.revoked_at else "rotated" if self.rotated_at else "active"


@dataclass(frozen=True)
class ImapConnectorRecord:
    """
    One tenant's IMAP mailbox connector (the spec's Email Inbox connector table, plus how often to
    poll and which template its mails go through).

    @ivar uid: 16 hex characters, chosen when the connector is added.
    @ivar password: decrypted; stored sealed with the store's secret key, never shown or logged.
    """

    uid: str
    tenant_id: str
    host: str
    username: str
    password: str = field(repr=False)
    port: int = 993
    mailbox: str = "INBOX"
    max_messages: int = 50
    use_ssl: bool = True
    poll_interval: float = 60.0
    template_id: str = "email-forwarded"
    label: str | None = None
    created_at: float = 0.0


@dataclass(frozen=True)
class PushBucket:
    """
    What one daemon instance saw of one token in one time bucket, added to the store's counts (so
    instances sharing a store add up).

    @ivar bucket_start: epoch seconds, a multiple of the bucket width.
    @ivar errors: replies of status 400 or more (see L{aisoc_inboxd.push_stats}).
    @ivar last_seen: epoch seconds of the bucket's latest request.
    """

    fingerprint: str
    template_id: str
    bucket_start: float
    requests: int
    errors: int
    last_seen: float


#: the window push totals are read over (the Push tab's, the admin API's token stats): 24 hours
PUSH_WINDOW = 24 * 3600.0


@dataclass(frozen=True)
class PushTotals:
    """
    One token's push activity: requests and error replies since a time, and its latest request
    (kept after the window, until the token is seen again).
    """

    tenant_id: str
    fingerprint: str
    template_id: str
    requests: int
    errors: int
    last_seen: float


class StoreError(Exception):
    """
    The store cannot be reached or used (connection refused, bad DSN, migration failure).

    @ivar reason: what went wrong, for C{aisoc_ingest_token_store_errors_total{reason}}: one of
        L{UNAVAILABLE} when the store did not answer in time, else C{"error"}.
    """

    def __init__(self, message: str, reason: str = "error") -> None:
        super().__init__(message)
        self.reason = reason


#: L{StoreError} reasons that mean the store is not answering: no answer within the call timeout,
#: no connection (refused, lost, shut after a timeout), or a statement cancelled by the server
UNAVAILABLE = frozenset({"timeout", "connection", "statement_timeout"})


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

    def claim_idempotency_key(self, fingerprint: str, key: str, now: float, lease: float,
                              owner: str) -> Deferred[tuple[bool, int | None, str | None]]:
        """
        See L{aisoc_inboxd.intake.idempotency}: claim a key for the request C{owner} (a random id), or
        learn its recorded reply, or that another request holds it.
        """

    def complete_idempotency_key(self, fingerprint: str, key: str, owner: str, status: int, body: str,
                                 expires_at: float) -> Deferred[int]:
        """
        Record the reply of a key C{owner} holds, kept until C{expires_at}; fires with 0 when it
        does not hold it (any more).
        """

    def release_idempotency_key(self, fingerprint: str, key: str, owner: str) -> Deferred[int]:
        """
        Drop the claim C{owner} holds (its request failed), so a retry with the same key can
        proceed; fires with 0 when it holds none.
        """

    def sweep_idempotency_keys(self, now: float) -> Deferred[int]:
        """
        Forget keys whose reply or lease expired before C{now}.
        """

    def invalidation_watcher(self, on_invalidate: Callable[[str | None], None], clock: Any) -> Any:
        """
        A Service that calls C{on_invalidate(fingerprint)} when a token is retired anywhere (or
        C{on_invalidate(None)} when it may have missed some), started once the schema is upgraded.
        """

    def broadcast_invalidation(self, fingerprint: str) -> Deferred[None]:
        """
        Make every daemon instance sharing this store forget C{fingerprint} now.
        """

    def insert_imap_connector(self, record: ImapConnectorRecord) -> Deferred[None]:
        """
        Store a new IMAP connector in C{record.tenant_id}'s context, its password sealed.
        """

    def list_imap_connectors(self, tenant_id: str) -> Deferred[list[ImapConnectorRecord]]:
        """
        One tenant's IMAP connectors, oldest first.
        """

    def remove_imap_connector(self, tenant_id: str, uid: str) -> Deferred[bool]:
        """
        Delete one of this tenant's connectors; C{False} when it has none with this uid.
        """

    def imap_connectors_to_poll(self) -> Deferred[list[ImapConnectorRecord]]:
        """
        The poller's one cross-tenant read: every connector, oldest first (PostgreSQL: through the
        C{SECURITY DEFINER} function C{aisoc_imap_connectors_to_poll()}, read-only).
        """

    def add_push_stats(self, tenant_id: str, buckets: Sequence[PushBucket]) -> Deferred[None]:
        """
        Add C{buckets} (tokens of C{tenant_id}) to the stored counts, in that tenant's context: a
        bucket already stored gets the requests and errors added and the later C{last_seen}.
        """

    def push_totals(self, tenant_id: str, since: float) -> Deferred[list[PushTotals]]:
        """
        The push activity of every token of C{tenant_id} seen since C{since} or earlier, latest
        first; requests and errors count from C{since}.
        """

    def all_push_totals(self, since: float) -> Deferred[list[PushTotals]]:
        """
        L{push_totals} of every tenant, for the status page (PostgreSQL: through the C{SECURITY
        DEFINER} function C{aisoc_push_stats_since()}, read-only).
        """

    def status_tokens(self, since: float, tenant_id: str | None, limit: int) -> Deferred[list[TokenRecord]]:
        """
        For the status page, of one tenant or (C{None}) every tenant: the active tokens, and those
        rotated or revoked since C{since}, newest first, at most C{limit}; never a signing secret
        (PostgreSQL: through the C{SECURITY DEFINER} function C{aisoc_status_tokens()}, read-only).
        """

    def sweep_push_stats(self, before: float) -> Deferred[int]:
        """
        Delete buckets that started before C{before}, except each token's newest (its last-seen
        time); fires with how many went.
        """
