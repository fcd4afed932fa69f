"""
The embedded default token store: one SQLite file in the state directory, no server to run (in WAL
mode: C{inboxd.sqlite3-wal} and C{-shm} beside it belong to it).

SQLite has no row-level security: tenant scoping is the C{tenant_id} condition every tenant-scoped
statement carries (shared with the PostgreSQL store, where RLS enforces it as well).
"""
from __future__ import annotations

import sqlite3

from twisted.enterprise.adbapi import Transaction
from twisted.internet.interfaces import IReactorCore

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred

from aisoc_inboxd.config import DatabaseSettings
from aisoc_inboxd.periodic import Periodic
from aisoc_inboxd.store._adbapi import ACTIVE, COLUMNS, AdbapiStore
from aisoc_inboxd.store.health import StoreHealth
from aisoc_inboxd.store.invalidation import OnInvalidate, RetiredTokenPoller
from aisoc_inboxd.store.pool import StorePool
from aisoc_inboxd.store.secrets import SecretBox

_RETIRED_SINCE = ("SELECT fingerprint, max(coalesce(rotated_at, 0), coalesce(revoked_at, 0)) "
                  "FROM tenant_inbox_tokens WHERE rotated_at > ? OR revoked_at > ?")

#: connections (and pool threads): reads run beside a write that waits for the lock
POOL_MAX = 3
#: the share of the call timeout a write waits for another connection's write lock (the CLI, a
#: sqlite3 shell, another worker) before it gives up and rolls back: the rest is left for the wait
#: in the pool's queue, so a write is never made after its caller was answered 503
BUSY_SHARE = 0.5


class SqliteStore(AdbapiStore):
    """
    The token store in the SQLite file C{path}, in write-ahead-log mode so that reads (token lookups
    above all) never wait for a writer in this or another process; writes take the write lock.
    """

    dialect = "sqlite"
    resolve_sql = f"SELECT {COLUMNS} FROM tenant_inbox_tokens WHERE fingerprint = %s AND {ACTIVE}"

    def __init__(self, path: str, secret_box: SecretBox, reactor: IReactorCore,
                 call_timeout: float = DatabaseSettings.call_timeout, health: StoreHealth | None = None) -> None:
        super().__init__(secret_box, reactor, call_timeout, health)
        self._path = path

    def _make_pool(self) -> StorePool:
        # isolation_level=None: the sqlite3 module opens no implicit transactions; _begin does.
        return StorePool("sqlite3", self._path, check_same_thread=False, isolation_level=None,
                         timeout=self._call_timeout * BUSY_SHARE, cp_min=1, cp_max=POOL_MAX,
                         cp_openfun=_write_ahead_log, cp_reactor=self._reactor)

    def _where(self) -> str:
        return f"SQLite database {self._path}"

    def _placeholders(self, sql: str) -> str:
        return sql.replace("%s", "?")

    def _begin(self, txn: Transaction, writes: bool) -> None:
        # IMMEDIATE takes the write lock up front: a read-then-write transaction (upgrade, rotate)
        # cannot fail half-way on a lock another process took in between. A read takes no lock.
        txn.execute("BEGIN IMMEDIATE" if writes else "BEGIN")

    def _has_schema_table(self, txn: Transaction) -> bool:
        txn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'")
        return txn.fetchone() is not None

    def _run_script(self, txn: Transaction, sql: str) -> None:
        # Not executescript(): it commits first, which would split a migration across transactions.
        statement = ""
        for line in sql.splitlines(keepends=True):
            statement += line
            if sqlite3.complete_statement(statement):
                txn.execute(statement)
                statement = ""
        if statement.strip():
            txn.execute(statement)

    def invalidation_watcher(self, on_invalidate: OnInvalidate, clock: Any) -> Service:
        """
        Polls for tokens another process (the CLI) retired in this file.
        """
        poller = RetiredTokenPoller(self.retired_since, on_invalidate, clock)
        return Periodic("token-invalidation", poller.poll, clock, interval=1.0, now=False)

    def broadcast_invalidation(self, fingerprint: str) -> Deferred[None]:
        """
        Nothing to tell: other processes on this file poll for retirements themselves.
        """
        return Deferred.fromCoroutine(_nothing())

    def retired_since(self, since: float) -> Deferred[list[tuple[str, float]]]:
        return self._read(self._retired_since, since)

    def _retired_since(self, txn: Transaction, since: float) -> list[tuple[str, float]]:
        txn.execute(_RETIRED_SINCE, (since, since))
        return [(fingerprint, float(when)) for fingerprint, when in txn.fetchall()]


def _write_ahead_log(connection: sqlite3.Connection) -> None:
    """
    Every new connection: the file in WAL mode (kept in the file once set; a no-op then).
    """
    connection.execute("PRAGMA journal_mode = WAL")


async def _nothing() -> None:
    return None

