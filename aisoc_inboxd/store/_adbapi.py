"""
The SQL both token stores share, run on a L{aisoc_inboxd.store.pool.StorePool} (adbapi).

Every statement runs on the pool's threads inside one transaction per call; the reactor only sees
Deferreds. Subclasses supply the dialect: the pool, placeholders, how a transaction begins, the tenant
context, the resolve query and how times are stored.
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar, Sequence, TypeVar

from twisted.application.service import Service
from twisted.enterprise.adbapi import ConnectionPool, Transaction
from twisted.internet.defer import Deferred, fail, gatherResults
from twisted.internet.interfaces import IReactorCore
from twisted.logger import Logger
from twisted.python.failure import Failure

from aisoc_inboxd.config import DatabaseSettings
from aisoc_inboxd.store import ImapConnectorRecord, PushBucket, PushTotals, StoreError, TokenRecord
from aisoc_inboxd.store.health import StoreHealth
from aisoc_inboxd.store.migrations import Migration, load_migrations
from aisoc_inboxd.store.secrets import SecretBox

T = TypeVar("T")

COLUMNS = ("fingerprint, tenant_id, template_id, label, signing_secret, "
            "created_at, rotated_at, revoked_at, hec_acks")
_INSERT = f"INSERT INTO tenant_inbox_tokens ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
_LIST = f"SELECT {COLUMNS} FROM tenant_inbox_tokens WHERE tenant_id = %s ORDER BY created_at, fingerprint"
ACTIVE = "rotated_at IS NULL AND revoked_at IS NULL"
_ACTIVE_OF_TENANT = f"tenant_id = %s AND fingerprint = %s AND {ACTIVE}"
_ROTATE = f"UPDATE tenant_inbox_tokens SET rotated_at = %s WHERE {_ACTIVE_OF_TENANT}"
_REVOKE = f"UPDATE tenant_inbox_tokens SET revoked_at = %s WHERE {_ACTIVE_OF_TENANT}"
_SCHEMA_VERSION = "SELECT coalesce(max(version), 0) FROM schema_migrations"
_KEY = "fingerprint = %s AND key = %s"
_EXPIRE_KEY = f"DELETE FROM inbox_idempotency_keys WHERE {_KEY} AND expires_at < %s"
_CLAIM_KEY = ("INSERT INTO inbox_idempotency_keys (fingerprint, key, owner, expires_at) VALUES (%s, %s, %s, %s) "
              "ON CONFLICT DO NOTHING")
_READ_KEY = f"SELECT status, body FROM inbox_idempotency_keys WHERE {_KEY}"
_COMPLETE_KEY = (f"UPDATE inbox_idempotency_keys SET status = %s, body = %s, expires_at = %s "
                 f"WHERE {_KEY} AND owner = %s")
_RELEASE_KEY = f"DELETE FROM inbox_idempotency_keys WHERE {_KEY} AND owner = %s AND status IS NULL"
_SWEEP_KEYS = "DELETE FROM inbox_idempotency_keys WHERE expires_at < %s"
_RECORD_MIGRATION = "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)"
IMAP_COLUMNS = ("uid, tenant_id, host, port, username, password, mailbox, max_messages, use_ssl, "
                "poll_interval, template_id, label, created_at")
_INSERT_IMAP = (f"INSERT INTO tenant_imap_connectors ({IMAP_COLUMNS}) "
                f"VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)")
_LIST_IMAP = (f"SELECT {IMAP_COLUMNS} FROM tenant_imap_connectors WHERE tenant_id = %s "
              f"ORDER BY created_at, uid")
_REMOVE_IMAP = "DELETE FROM tenant_imap_connectors WHERE tenant_id = %s AND uid = %s"
#: every connector, for the poller; PostgreSQL reads them through its SECURITY DEFINER function
_IMAP_TO_POLL = {
    "sqlite": f"SELECT {IMAP_COLUMNS} FROM tenant_imap_connectors ORDER BY created_at, uid",
    "postgres": f"SELECT {IMAP_COLUMNS} FROM aisoc_imap_connectors_to_poll()",
}

_ADD_PUSH = ("INSERT INTO tenant_inbox_push_stats (tenant_id, fingerprint, bucket_start, template_id, "
             "requests, errors, last_seen) VALUES (%s, %s, %s, %s, %s, %s, %s) "
             "ON CONFLICT (tenant_id, fingerprint, bucket_start) DO UPDATE SET "
             "requests = tenant_inbox_push_stats.requests + excluded.requests, "
             "errors = tenant_inbox_push_stats.errors + excluded.errors, "
             "last_seen = CASE WHEN excluded.last_seen > tenant_inbox_push_stats.last_seen "
             "THEN excluded.last_seen ELSE tenant_inbox_push_stats.last_seen END")
_PUSH_TOTALS_COLUMNS = ("tenant_id, fingerprint, max(template_id), "
                        "coalesce(sum(CASE WHEN bucket_start >= %s THEN requests END), 0), "
                        "coalesce(sum(CASE WHEN bucket_start >= %s THEN errors END), 0), max(last_seen)")
_PUSH_TOTALS = (f"SELECT {_PUSH_TOTALS_COLUMNS} FROM tenant_inbox_push_stats WHERE tenant_id = %s "
                f"GROUP BY tenant_id, fingerprint ORDER BY max(last_seen) DESC, fingerprint")
#: every tenant's totals; PostgreSQL reads them through its SECURITY DEFINER function
_ALL_PUSH_TOTALS = {
    "sqlite": f"SELECT {_PUSH_TOTALS_COLUMNS} FROM tenant_inbox_push_stats "
              f"GROUP BY tenant_id, fingerprint ORDER BY max(last_seen) DESC, fingerprint",
    "postgres": "SELECT tenant_id, fingerprint, template_id, requests, errors, last_seen "
                "FROM aisoc_push_stats_since(%s) ORDER BY last_seen DESC, fingerprint",
}
#: the status page's tokens in C{COLUMNS} order, the secret left out (NULL): every active token and
#: those retired since a time, of one tenant or all (''), newest first; the parameters are (since,
#: tenant, rows) in both dialects, PostgreSQL reading through its SECURITY DEFINER function
_STATUS_COLUMNS = "fingerprint, tenant_id, template_id, label, NULL, created_at, rotated_at, revoked_at, hec_acks"
_STATUS_TOKENS = {
    "sqlite": f"WITH asked(since, tenant) AS (SELECT %s, %s) SELECT {_STATUS_COLUMNS} "
              f"FROM tenant_inbox_tokens, asked WHERE (asked.tenant = '' OR tenant_id = asked.tenant) "
              f"AND ({ACTIVE} OR rotated_at >= asked.since OR revoked_at >= asked.since) "
              f"ORDER BY created_at DESC, fingerprint LIMIT %s",
    "postgres": f"SELECT {_STATUS_COLUMNS} FROM aisoc_status_tokens(%s, %s, %s)",
}
#: old buckets, except each token's newest; PostgreSQL deletes through its SECURITY DEFINER function
_SWEEP_PUSH = {
    "sqlite": "DELETE FROM tenant_inbox_push_stats AS s WHERE bucket_start < %s AND bucket_start < "
              "(SELECT max(n.bucket_start) FROM tenant_inbox_push_stats AS n "
              "WHERE n.tenant_id = s.tenant_id AND n.fingerprint = s.fingerprint)",
    "postgres": "SELECT aisoc_push_stats_sweep(%s)",
}


class _Call:
    """
    One database call as its pool thread and the reactor share it.

    @ivar abandoned: set by the reactor when the caller stopped waiting (the call timed out).
    @ivar connection: the DB-API connection running it, once a pool thread picked it up.
    """

    def __init__(self) -> None:
        self.abandoned = False
        self.connection: Any = None


class AdbapiStore(Service):
    """
    A L{aisoc_inboxd.store.Store} on adbapi. The pool is built in C{startService} (its constructor
    schedules the pool's start on the reactor) and closed in C{stopService} once in-flight calls end.

    Every call but a schema upgrade is given C{call_timeout} seconds: past it the caller gets a
    L{StoreError} (reason C{timeout}) while the call is abandoned — skipped if no thread started
    it, and its connection shut if it is still waiting on the server, so no pool thread stays stuck
    on a silent link. Every outcome is reported to C{health}.
    """

    name = "token-store"
    dialect: ClassVar[str]
    """The migrations folder of this dialect."""
    resolve_sql: ClassVar[str]
    """One active row by fingerprint, in C{COLUMNS} order, with one C{%s} parameter."""
    _log = Logger()

    def __init__(self, secret_box: SecretBox, reactor: IReactorCore,
                 call_timeout: float = DatabaseSettings.call_timeout, health: StoreHealth | None = None) -> None:
        """
        @param reactor: runs the pool; also provides C{IReactorThreads} and C{IReactorTime}.
        """
        self._box = secret_box
        self._reactor = reactor
        self._call_timeout = call_timeout
        self.health = health or StoreHealth(reactor)  # type: ignore[arg-type]
        self._migrations: tuple[Migration, ...] = load_migrations(self.dialect)
        self._pool: ConnectionPool | None = None
        self._in_flight: set[Deferred[None]] = set()

    # -- dialect hooks ------------------------------------------------------------------------

    def _make_pool(self) -> ConnectionPool:
        raise NotImplementedError

    def _where(self) -> str:
        """
        Where the data lives, for errors and logs; never includes a password.
        """
        raise NotImplementedError

    def _placeholders(self, sql: str) -> str:
        """
        C{sql} in this driver's paramstyle; the shared SQL is written with C{%s}.
        """
        return sql

    def _begin(self, txn: Transaction, writes: bool) -> None:
        """
        Open the transaction the pool commits (or rolls back) when the interaction returns; one
        that only reads (C{writes} false) need not wait for another writer.
        """

    def _lock_schema(self, txn: Transaction) -> None:
        """
        Serialize concurrent C{upgrade()}s (several daemons starting at once) until commit.
        """

    def _has_schema_table(self, txn: Transaction) -> bool:
        raise NotImplementedError

    def _run_script(self, txn: Transaction, sql: str) -> None:
        raise NotImplementedError

    def _enter_tenant(self, txn: Transaction, tenant_id: str) -> None:
        """
        Scope the rest of this transaction to C{tenant_id}.
        """

    def _to_db_time(self, epoch: float) -> object:
        return epoch

    def _from_db_time(self, value: Any) -> float:
        return float(value)

    def _reason(self, error: Exception) -> str:
        """
        The L{StoreError} reason of a driver error.
        """
        return "error"

    def _abort(self, connection: Any) -> None:
        """
        Called on the reactor thread when a call on C{connection} timed out: make a pool thread
        still waiting on the server give up. Nothing to do where calls never wait on a network.
        """

    # -- service ------------------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._pool = self._make_pool()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return Deferred.fromCoroutine(self._close())

    async def _close(self) -> None:
        pool, self._pool = self._pool, None
        if self._in_flight:
            await gatherResults(list(self._in_flight))
        if pool is not None:
            pool.close()

    # -- the Store interface ------------------------------------------------------------------

    def upgrade(self) -> Deferred[int]:
        return Deferred.fromCoroutine(self._upgrade())

    async def _upgrade(self) -> int:
        while True:
            version, applied = await self._run(self._apply_next_migration, bounded=False)
            if applied is None:
                break
            self._log.info("{store}: applied schema migration {version} ({migration})",
                           store=self._where(), version=version, migration=applied.name)
        if version > len(self._migrations):
            self._log.warn("{store}: schema version {version} is newer than this daemon's "
                           "{known}; running anyway", store=self._where(), version=version,
                           known=len(self._migrations))
        return version

    def resolve(self, fingerprint: str) -> Deferred[TokenRecord | None]:
        return self._read(self._resolve, fingerprint)

    def insert_token(self, record: TokenRecord) -> Deferred[None]:
        return self._run(self._insert_scoped, record)

    def list_tokens(self, tenant_id: str) -> Deferred[list[TokenRecord]]:
        return self._read(self._list, tenant_id)

    def rotate_token(self, tenant_id: str, fingerprint: str, new: TokenRecord,
                     now: float) -> Deferred[bool]:
        if new.tenant_id != tenant_id:
            return fail(ValueError("a rotated token's successor must belong to the same tenant"))
        return self._run(self._rotate, tenant_id, fingerprint, new, now)

    def revoke_token(self, tenant_id: str, fingerprint: str, now: float) -> Deferred[bool]:
        return self._run(self._retire, _REVOKE, tenant_id, fingerprint, now)

    def claim_idempotency_key(self, fingerprint: str, key: str, now: float, lease: float,
                              owner: str) -> Deferred[tuple[bool, int | None, str | None]]:
        """
        Claim C{key} for the request C{owner}: C{(True, None, None)} when it may go ahead, else
        C{(False, status, body)} with the recorded reply, or C{(False, None, None)} while another
        request holds the claim. An expired reply or lease is cleared first.
        """
        return self._run(self._claim_key, fingerprint, key, now, lease, owner)

    def complete_idempotency_key(self, fingerprint: str, key: str, owner: str, status: int, body: str,
                                 expires_at: float) -> Deferred[int]:
        return self._run(self._write, _COMPLETE_KEY,
                         (status, body, self._to_db_time(expires_at), fingerprint, key, owner))

    def release_idempotency_key(self, fingerprint: str, key: str, owner: str) -> Deferred[int]:
        return self._run(self._write, _RELEASE_KEY, (fingerprint, key, owner))

    def sweep_idempotency_keys(self, now: float) -> Deferred[int]:
        """
        Forget replies and leases that expired before C{now}; fires with how many.
        """
        return self._run(self._write, _SWEEP_KEYS, (self._to_db_time(now),))

    def insert_imap_connector(self, record: ImapConnectorRecord) -> Deferred[None]:
        return self._run(self._insert_imap, record)

    def list_imap_connectors(self, tenant_id: str) -> Deferred[list[ImapConnectorRecord]]:
        return self._read(self._list_imap, tenant_id)

    def remove_imap_connector(self, tenant_id: str, uid: str) -> Deferred[bool]:
        return self._run(self._remove_imap, tenant_id, uid)

    def imap_connectors_to_poll(self) -> Deferred[list[ImapConnectorRecord]]:
        return self._read(self._imap_to_poll)

    def add_push_stats(self, tenant_id: str, buckets: Sequence[PushBucket]) -> Deferred[None]:
        return self._run(self._add_push, tenant_id, tuple(buckets))

    def push_totals(self, tenant_id: str, since: float) -> Deferred[list[PushTotals]]:
        return self._read(self._push_totals, tenant_id, since)

    def all_push_totals(self, since: float) -> Deferred[list[PushTotals]]:
        return self._read(self._all_push_totals, since)

    def sweep_push_stats(self, before: float) -> Deferred[int]:
        return self._run(self._sweep_push, before)

    def status_tokens(self, since: float, tenant_id: str | None, limit: int) -> Deferred[list[TokenRecord]]:
        return self._run(self._status_tokens, since, tenant_id or "", limit)

    # -- plumbing -----------------------------------------------------------------------------

    def _read(self, interaction: Callable[..., T], *args: object) -> Deferred[T]:
        """
        L{_run} for an interaction that only reads.
        """
        return self._run(interaction, *args, writes=False)

    def _run(self, interaction: Callable[..., T], *args: object, bounded: bool = True,
             writes: bool = True) -> Deferred[T]:
        """
        Run C{interaction(txn, *args)} in one transaction on a pool thread, within the call timeout
        when C{bounded}. Driver and connection errors become L{StoreError}s naming where the data lives.
        """
        if self._pool is None:
            return fail(StoreError(f"{self._where()}: the store is not running"))
        call = _Call()
        d: Deferred[T] = self._pool.runInteraction(self._transaction, self._pool, call, writes, interaction, *args)
        d.addErrback(self._as_store_error, self._pool.dbapi.Error)
        if bounded:
            d.addTimeout(self._call_timeout, self._reactor, onTimeoutCancel=lambda result, timeout:
                         self._timed_out(call, timeout))
        d.addCallbacks(self._answered, self._failed)
        done: Deferred[None] = Deferred()
        self._in_flight.add(done)

        def finished(result: T) -> T:
            self._in_flight.discard(done)
            done.callback(None)
            return result

        d.addBoth(finished)
        return d

    def _transaction(self, txn: Transaction, pool: ConnectionPool, call: _Call, writes: bool,
                     interaction: Callable[..., T], *args: object) -> T | None:
        if call.abandoned:
            return None  # nobody waits for it; returning (not raising) spares the pool a rollback
        call.connection = pool.connect()  # this thread's, already open
        self._begin(txn, writes)
        return interaction(txn, *args)

    def _timed_out(self, call: _Call, timeout: float) -> Failure:
        call.abandoned = True
        if call.connection is not None:
            self._abort(call.connection)
        return Failure(StoreError(f"{self._where()}: no answer within {timeout:g} s", "timeout"))

    def _answered(self, result: T) -> T:
        self.health.answered()
        return result

    def _failed(self, failure: Failure) -> Failure:
        if failure.check(StoreError):
            self.health.failed(failure.value)
        return failure

    def _as_store_error(self, failure: Failure, driver_error: type[Exception]) -> Failure:
        """
        Only the first line of a driver message: later lines (PostgreSQL's DETAIL) may quote values.
        """
        if failure.check(driver_error):
            lines = str(failure.value).strip().splitlines() or [type(failure.value).__name__]
            raise StoreError(f"{self._where()}: {lines[0]}", self._reason(failure.value)) from failure.value
        return failure

    def _execute(self, txn: Transaction, sql: str, params: tuple[object, ...] = ()) -> None:
        txn.execute(self._placeholders(sql), params)

    def _apply_next_migration(self, txn: Transaction) -> tuple[int, Migration | None]:
        """
        Apply the first pending migration and record it, in this one transaction.
        """
        self._lock_schema(txn)
        version = 0
        if self._has_schema_table(txn):
            self._execute(txn, _SCHEMA_VERSION)
            version = int(txn.fetchone()[0])
        pending = [m for m in self._migrations if m.version > version]
        if not pending:
            return version, None
        migration = pending[0]
        self._run_script(txn, migration.sql)
        self._execute(txn, _RECORD_MIGRATION, (migration.version, migration.name))
        return migration.version, migration

    def _resolve(self, txn: Transaction, fingerprint: str) -> TokenRecord | None:
        self._execute(txn, self.resolve_sql, (fingerprint,))
        row = txn.fetchone()
        return None if row is None else self._record(row)

    def _insert_scoped(self, txn: Transaction, record: TokenRecord) -> None:
        self._enter_tenant(txn, record.tenant_id)
        self._insert(txn, record)

    def _insert(self, txn: Transaction, record: TokenRecord) -> None:
        secret = None if record.signing_secret is None else self._box.seal(record.signing_secret)
        self._execute(txn, _INSERT, (
            record.fingerprint, record.tenant_id, record.template_id, record.label, secret,
            self._to_db_time(record.created_at), self._optional_to_db(record.rotated_at),
            self._optional_to_db(record.revoked_at), record.hec_acks))

    def _list(self, txn: Transaction, tenant_id: str) -> list[TokenRecord]:
        self._enter_tenant(txn, tenant_id)
        self._execute(txn, _LIST, (tenant_id,))
        return [self._record(row) for row in txn.fetchall()]

    def _rotate(self, txn: Transaction, tenant_id: str, fingerprint: str, new: TokenRecord,
                now: float) -> bool:
        if not self._retire(txn, _ROTATE, tenant_id, fingerprint, now):
            return False
        self._insert(txn, new)
        return True

    def _retire(self, txn: Transaction, update: str, tenant_id: str, fingerprint: str,
                now: float) -> bool:
        self._enter_tenant(txn, tenant_id)
        self._execute(txn, update, (self._to_db_time(now), tenant_id, fingerprint))
        return bool(txn.rowcount == 1)

    def _claim_key(self, txn: Transaction, fingerprint: str, key: str, now: float, lease: float,
                   owner: str) -> tuple[bool, int | None, str | None]:
        self._execute(txn, _EXPIRE_KEY, (fingerprint, key, self._to_db_time(now)))
        self._execute(txn, _CLAIM_KEY, (fingerprint, key, owner, self._to_db_time(now + lease)))
        if txn.rowcount == 1:
            return True, None, None
        self._execute(txn, _READ_KEY, (fingerprint, key))
        status, body = txn.fetchone()
        return False, status, body

    def _write(self, txn: Transaction, sql: str, params: tuple[object, ...]) -> int:
        self._execute(txn, sql, params)
        return int(txn.rowcount)

    def _insert_imap(self, txn: Transaction, record: ImapConnectorRecord) -> None:
        self._enter_tenant(txn, record.tenant_id)
        self._execute(txn, _INSERT_IMAP, (
            record.uid, record.tenant_id, record.host, record.port, record.username,
            self._box.seal(record.password.encode("utf-8")), record.mailbox, record.max_messages,
            record.use_ssl, record.poll_interval, record.template_id, record.label,
            self._to_db_time(record.created_at)))

    def _list_imap(self, txn: Transaction, tenant_id: str) -> list[ImapConnectorRecord]:
        self._enter_tenant(txn, tenant_id)
        self._execute(txn, _LIST_IMAP, (tenant_id,))
        return [self._imap_record(row) for row in txn.fetchall()]

    def _remove_imap(self, txn: Transaction, tenant_id: str, uid: str) -> bool:
        self._enter_tenant(txn, tenant_id)
        self._execute(txn, _REMOVE_IMAP, (tenant_id, uid))
        return bool(txn.rowcount == 1)

    def _imap_to_poll(self, txn: Transaction) -> list[ImapConnectorRecord]:
        self._execute(txn, _IMAP_TO_POLL[self.dialect])
        return [self._imap_record(row) for row in txn.fetchall()]

    def _add_push(self, txn: Transaction, tenant_id: str, buckets: tuple[PushBucket, ...]) -> None:
        self._enter_tenant(txn, tenant_id)
        for b in buckets:
            self._execute(txn, _ADD_PUSH, (tenant_id, b.fingerprint, self._to_db_time(b.bucket_start),
                                           b.template_id, b.requests, b.errors, self._to_db_time(b.last_seen)))

    def _push_totals(self, txn: Transaction, tenant_id: str, since: float) -> list[PushTotals]:
        self._enter_tenant(txn, tenant_id)
        at = self._to_db_time(since)
        self._execute(txn, _PUSH_TOTALS, (at, at, tenant_id))
        return [self._push_totals_row(row) for row in txn.fetchall()]

    def _all_push_totals(self, txn: Transaction, since: float) -> list[PushTotals]:
        sql = _ALL_PUSH_TOTALS[self.dialect]
        self._execute(txn, sql, (self._to_db_time(since),) * sql.count("%s"))
        return [self._push_totals_row(row) for row in txn.fetchall()]

    def _status_tokens(self, txn: Transaction, since: float, tenant_id: str, limit: int) -> list[TokenRecord]:
        self._execute(txn, _STATUS_TOKENS[self.dialect], (self._to_db_time(since), tenant_id, limit))
        return [self._record(row) for row in txn.fetchall()]

    def _sweep_push(self, txn: Transaction, before: float) -> int:
        self._execute(txn, _SWEEP_PUSH[self.dialect], (self._to_db_time(before),))
        return int(txn.fetchone()[0]) if self.dialect == "postgres" else int(txn.rowcount)

    def _push_totals_row(self, row: tuple[Any, ...]) -> PushTotals:
        tenant_id, fingerprint, template_id, requests, errors, last_seen = row
        return PushTotals(tenant_id=tenant_id, fingerprint=fingerprint, template_id=template_id,
                          requests=int(requests), errors=int(errors), last_seen=self._from_db_time(last_seen))

    def _imap_record(self, row: tuple[Any, ...]) -> ImapConnectorRecord:
        (uid, tenant_id, host, port, username, password, mailbox, max_messages, use_ssl,
         poll_interval, template_id, label, created) = row
        return ImapConnectorRecord(
            uid=uid, tenant_id=tenant_id, host=host, username=username,
            password=self._box.open(bytes(password)).decode("utf-8"), port=int(port), mailbox=mailbox,
            max_messages=int(max_messages), use_ssl=bool(use_ssl), poll_interval=float(poll_interval),
            template_id=template_id, label=label, created_at=self._from_db_time(created))

    def _record(self, row: tuple[Any, ...]) -> TokenRecord:
        fingerprint, tenant_id, template_id, label, secret, created, rotated, revoked, hec_acks = row
        return TokenRecord(
            fingerprint=fingerprint, tenant_id=tenant_id, template_id=template_id, label=label,
            signing_secret=None if secret is None else self._box.open(bytes(secret)),
            created_at=self._from_db_time(created), rotated_at=self._optional_from_db(rotated),
            revoked_at=self._optional_from_db(revoked), hec_acks=bool(hec_acks))

    def _optional_to_db(self, epoch: float | None) -> object:
        return None if epoch is None else self._to_db_time(epoch)

    def _optional_from_db(self, value: Any) -> float | None:
        return None if value is None else self._from_db_time(value)
