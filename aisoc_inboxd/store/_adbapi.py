"""
The SQL both token stores share, run on a L{twisted.enterprise.adbapi.ConnectionPool}.

Every statement runs on the pool's threads inside one transaction per call; the reactor only sees
Deferreds. Subclasses supply the dialect: the pool, placeholders, how a transaction begins, the tenant
context, the resolve query and how times are stored.
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar, TypeVar

from twisted.application.service import Service
from twisted.enterprise.adbapi import ConnectionLost, ConnectionPool, Transaction
from twisted.internet.defer import Deferred, fail, gatherResults
from twisted.internet.interfaces import IReactorCore
from twisted.logger import Logger
from twisted.python.failure import Failure

from aisoc_inboxd.store import StoreError, TokenRecord
from aisoc_inboxd.store.migrations import Migration, load_migrations
from aisoc_inboxd.store.secrets import SecretBox

T = TypeVar("T")

COLUMNS = ("fingerprint, tenant_id, template_id, label, signing_secret, "
            "created_at, rotated_at, revoked_at")
_INSERT = f"INSERT INTO tenant_inbox_tokens ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
_LIST = f"SELECT {COLUMNS} FROM tenant_inbox_tokens WHERE tenant_id = %s ORDER BY created_at, fingerprint"
ACTIVE = "rotated_at IS NULL AND revoked_at IS NULL"
_ACTIVE_OF_TENANT = f"tenant_id = %s AND fingerprint = %s AND {ACTIVE}"
_ROTATE = f"UPDATE tenant_inbox_tokens SET rotated_at = %s WHERE {_ACTIVE_OF_TENANT}"
_REVOKE = f"UPDATE tenant_inbox_tokens SET revoked_at = %s WHERE {_ACTIVE_OF_TENANT}"
_SCHEMA_VERSION = "SELECT coalesce(max(version), 0) FROM schema_migrations"
_RECORD_MIGRATION = "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)"


class AdbapiStore(Service):
    """
    A L{aisoc_inboxd.store.Store} on adbapi. The pool is built in C{startService} (its constructor
    schedules the pool's start on the reactor) and closed in C{stopService} once in-flight calls end.
    """

    name = "token-store"
    dialect: ClassVar[str]
    """The migrations folder of this dialect."""
    resolve_sql: ClassVar[str]
    """One active row by fingerprint, in C{COLUMNS} order, with one C{%s} parameter."""
    _log = Logger()

    def __init__(self, secret_box: SecretBox, reactor: IReactorCore) -> None:
        """
        @param reactor: runs the pool; also provides C{IReactorThreads}.
        """
        self._box = secret_box
        self._reactor = reactor
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

    def _begin(self, txn: Transaction) -> None:
        """
        Open the transaction the pool commits (or rolls back) when the interaction returns.
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
            version, applied = await self._run(self._apply_next_migration)
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
        return self._run(self._resolve, fingerprint)

    def insert_token(self, record: TokenRecord) -> Deferred[None]:
        return self._run(self._insert_scoped, record)

    def list_tokens(self, tenant_id: str) -> Deferred[list[TokenRecord]]:
        return self._run(self._list, tenant_id)

    def rotate_token(self, tenant_id: str, fingerprint: str, new: TokenRecord,
                     now: float) -> Deferred[bool]:
        if new.tenant_id != tenant_id:
            return fail(ValueError("a rotated token's successor must belong to the same tenant"))
        return self._run(self._rotate, tenant_id, fingerprint, new, now)

    def revoke_token(self, tenant_id: str, fingerprint: str, now: float) -> Deferred[bool]:
        return self._run(self._retire, _REVOKE, tenant_id, fingerprint, now)

    # -- plumbing -----------------------------------------------------------------------------

    def _run(self, interaction: Callable[..., T], *args: object) -> Deferred[T]:
        """
        Run C{interaction(txn, *args)} in one transaction on a pool thread. Driver and connection
        errors become L{StoreError}s naming where the data lives.
        """
        if self._pool is None:
            return fail(StoreError(f"{self._where()}: the store is not running"))
        d: Deferred[T] = self._pool.runInteraction(self._transaction, interaction, *args)
        d.addErrback(self._as_store_error, self._pool.dbapi.Error)
        done: Deferred[None] = Deferred()
        self._in_flight.add(done)

        def finished(result: T) -> T:
            self._in_flight.discard(done)
            done.callback(None)
            return result

        d.addBoth(finished)
        return d

    def _transaction(self, txn: Transaction, interaction: Callable[..., T], *args: object) -> T:
        self._begin(txn)
        return interaction(txn, *args)

    def _as_store_error(self, failure: Failure, driver_error: type[Exception]) -> Failure:
        """
        Only the first line of a driver message: later lines (PostgreSQL's DETAIL) may quote values.
        """
        if failure.check(ConnectionLost):
            raise StoreError(f"{self._where()}: connection lost") from failure.value
        if failure.check(driver_error):
            lines = str(failure.value).strip().splitlines() or [type(failure.value).__name__]
            raise StoreError(f"{self._where()}: {lines[0]}") from failure.value
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
            self._optional_to_db(record.revoked_at)))

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

    def _record(self, row: tuple[Any, ...]) -> TokenRecord:
        fingerprint, tenant_id, template_id, label, secret, created, rotated, revoked = row
        return TokenRecord(
            fingerprint=fingerprint, tenant_id=tenant_id, template_id=template_id, label=label,
            signing_secret=None if secret is None else self._box.open(bytes(secret)),
            created_at=self._from_db_time(created), rotated_at=self._optional_from_db(rotated),
            revoked_at=self._optional_from_db(revoked))

    def _optional_to_db(self, epoch: float | None) -> object:
        return None if epoch is None else self._to_db_time(epoch)

    def _optional_from_db(self, value: Any) -> float | None:
        return None if value is None else self._from_db_time(value)
