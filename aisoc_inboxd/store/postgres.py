"""
The production token store: PostgreSQL through psycopg2 on an adbapi pool, shared by every daemon
instance, with row-level security by tenant.

Tenant-scoped statements run after C{set_config('aisoc.tenant_id', tenant, true)} in the same
transaction, so a statement that forgot its tenant sees no rows at all. The ingest path reads through
C{aisoc_inbox_resolve_token(fp)}, which returns one active token and nothing else. A superuser or
C{BYPASSRLS} role is not held to these policies; C{upgrade()} warns when connected as one.
"""
from __future__ import annotations

import os
import socket
from datetime import datetime, timezone
from typing import Any

import psycopg2
from psycopg2.errors import QueryCanceled
from psycopg2.extensions import TRANSACTION_STATUS_ACTIVE, parse_dsn
from twisted.enterprise.adbapi import Transaction
from twisted.internet.interfaces import IReactorCore

from aisoc_inboxd.config import DatabaseSettings
from aisoc_inboxd.store import StoreError
from twisted.application.service import Service
from twisted.internet.defer import Deferred

from aisoc_inboxd.store._adbapi import COLUMNS, AdbapiStore
from aisoc_inboxd.store.health import StoreHealth
from aisoc_inboxd.store.invalidation import CHANNEL, OnInvalidate, PostgresInvalidationListener
from aisoc_inboxd.store.pool import StorePool
from aisoc_inboxd.store.secrets import SecretBox

POOL_MAX = 5
_SCHEMA_LOCK = 0x6169736F63  # pg_advisory_xact_lock key held while migrating ("aisoc")
_BYPASSES_RLS = ("SELECT current_user, rolsuper OR rolbypassrls FROM pg_roles "
                 "WHERE rolname = current_user")


class PostgresStore(AdbapiStore):
    """
    The token store in the PostgreSQL database named by C{dsn} (libpq key=value or URI form).
    """

    dialect = "postgres"
    resolve_sql = f"SELECT {COLUMNS} FROM aisoc_inbox_resolve_token(%s)"

    def __init__(self, dsn: str, secret_box: SecretBox, reactor: IReactorCore,
                 settings: DatabaseSettings = DatabaseSettings(), health: StoreHealth | None = None) -> None:
        """
        @param settings: the timeouts (its C{dsn} is not read: C{dsn} is the one used).
        @raise StoreError: when C{dsn} cannot be parsed (the message does not repeat it: it may
            hold a password).
        """
        try:
            params = parse_dsn(dsn)
        except psycopg2.ProgrammingError:
            raise StoreError("the PostgreSQL DSN is malformed") from None
        super().__init__(secret_box, reactor, settings.call_timeout, health)
        self._dsn = dsn
        self._settings = settings
        self._defaults = connection_parameters(settings, params)
        host = params.get("host") or params.get("hostaddr") or "local socket"
        self._location = (f"PostgreSQL at {host}:{params.get('port', '5432')}"
                          f"/{params.get('dbname', '')} as {params.get('user', '(default user)')}")

    def _make_pool(self) -> StorePool:
        return StorePool("psycopg2", self._dsn, cp_min=1, cp_max=POOL_MAX, cp_reconnect=True,
                              cp_reactor=self._reactor, **self._defaults)

    def _where(self) -> str:
        return self._location

    async def _upgrade(self) -> int:
        user, bypasses = await self._run(self._role)
        if bypasses:
            self._log.warn("{store}: role {user} is a superuser or has BYPASSRLS: tenant row-level "
                           "security is NOT enforced; connect as an ordinary role",
                           store=self._where(), user=user)
        return await super()._upgrade()

    def _role(self, txn: Transaction) -> tuple[str, bool]:
        txn.execute(_BYPASSES_RLS)
        user, bypasses = txn.fetchone()
        return user, bool(bypasses)

    def _lock_schema(self, txn: Transaction) -> None:
        # a migration (and waiting for another instance's) may take longer than any statement should
        txn.execute("SET LOCAL statement_timeout = 0")
        txn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))

    def _has_schema_table(self, txn: Transaction) -> bool:
        txn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
        return bool(txn.fetchone()[0])

    def _run_script(self, txn: Transaction, sql: str) -> None:
        txn.execute(sql)

    def _enter_tenant(self, txn: Transaction, tenant_id: str) -> None:
        txn.execute("SELECT set_config('aisoc.tenant_id', %s, true)", (tenant_id,))

    def _to_db_time(self, epoch: float) -> datetime:
        return datetime.fromtimestamp(epoch, timezone.utc)

    def _from_db_time(self, value: Any) -> float:
        return float(value.timestamp())

    def _reason(self, error: Exception) -> str:
        if isinstance(error, QueryCanceled):
            return "statement_timeout"
        if isinstance(error, (psycopg2.OperationalError, psycopg2.InterfaceError)):
            return "connection"
        return "error"

    def _abort(self, connection: Any) -> None:
        """
        Shut the socket of a connection whose statement is still out (a connection between
        statements is not blocked), so libpq fails the call and the pool opens a new connection:
        TCP alone never gives up on a peer that acknowledges but does not answer (a stuck proxy).
        """
        if connection.closed or connection.info.transaction_status != TRANSACTION_STATUS_ACTIVE:
            return
        with socket.socket(fileno=os.dup(connection.fileno())) as stuck:
            try:
                stuck.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already gone
        self._log.warn("{store}: shut a connection that left a statement unanswered for {timeout:g} s",
                       store=self._where(), timeout=self._call_timeout)

    def invalidation_watcher(self, on_invalidate: OnInvalidate, clock: Any) -> Service:
        """
        LISTENs for the fingerprints the retirement trigger NOTIFYs, from any instance or writer.
        """
        return PostgresInvalidationListener(
            lambda: psycopg2.connect(self._dsn, async_=True, **self._defaults), on_invalidate, self._reactor,
            check_interval=self._settings.listen_check_interval, answer_within=self._settings.connect_timeout,
            on_link=self.health.link)

    def broadcast_invalidation(self, fingerprint: str) -> Deferred[None]:
        """
        Tell every instance (this one included) to forget C{fingerprint} now.
        """
        return self._run(self._notify, fingerprint)

    def _notify(self, txn: Transaction, fingerprint: str) -> None:
        txn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, fingerprint))


def connection_parameters(settings: DatabaseSettings, dsn_params: dict[str, str]) -> dict[str, Any]:
    """
    The libpq parameters that bound how long a connection may take, hang or stay silent, from
    C{settings}, for every key the DSN does not set itself; the statement timeout goes into
    C{options} unless the DSN's C{options} set one.
    """
    wanted: dict[str, Any] = {
        "connect_timeout": settings.connect_timeout,
        "keepalives": 1,
        "keepalives_idle": settings.keepalives_idle,
        "keepalives_interval": settings.keepalives_interval,
        "keepalives_count": settings.keepalives_count,
        "tcp_user_timeout": round(settings.tcp_user_timeout * 1000),
        "application_name": "aisoc-inboxd",
    }
    chosen = {key: value for key, value in wanted.items() if key not in dsn_params}
    options = dsn_params.get("options", "")
    if "statement_timeout" not in options:
        chosen["options"] = f"{options} -c statement_timeout={round(settings.statement_timeout * 1000)}".strip()
    return chosen
