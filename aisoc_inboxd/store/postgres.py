"""
The production token store: PostgreSQL through psycopg2 on an adbapi pool, shared by every daemon
instance, with row-level security by tenant.

Tenant-scoped statements run after C{set_config('aisoc.tenant_id', tenant, true)} in the same
transaction, so a statement that forgot its tenant sees no rows at all. The ingest path reads through
C{aisoc_inbox_resolve_token(fp)}, which returns one active token and nothing else. A superuser or
C{BYPASSRLS} role is not held to these policies; C{upgrade()} warns when connected as one.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import psycopg2
from psycopg2.extensions import parse_dsn
from twisted.enterprise.adbapi import ConnectionPool, Transaction
from twisted.internet.interfaces import IReactorCore

from aisoc_inboxd.store import StoreError
from twisted.application.service import Service
from twisted.internet.defer import Deferred

from aisoc_inboxd.store._adbapi import COLUMNS, AdbapiStore
from aisoc_inboxd.store.invalidation import CHANNEL, OnInvalidate, PostgresInvalidationListener
from aisoc_inboxd.store.secrets import SecretBox

POOL_MAX = 5
CONNECT_TIMEOUT = 5
"""Seconds libpq waits per host when the DSN sets no C{connect_timeout}: start-up fails fast."""
_SCHEMA_LOCK = 0x6169736F63  # pg_advisory_xact_lock key held while migrating ("aisoc")
_BYPASSES_RLS = ("SELECT current_user, rolsuper OR rolbypassrls FROM pg_roles "
                 "WHERE rolname = current_user")


class PostgresStore(AdbapiStore):
    """
    The token store in the PostgreSQL database named by C{dsn} (libpq key=value or URI form).
    """

    dialect = "postgres"
    resolve_sql = f"SELECT {COLUMNS} FROM aisoc_inbox_resolve_token(%s)"

    def __init__(self, dsn: str, secret_box: SecretBox, reactor: IReactorCore) -> None:
        """
        @raise StoreError: when C{dsn} cannot be parsed (the message does not repeat it: it may
            hold a password).
        """
        super().__init__(secret_box, reactor)
        try:
            params = parse_dsn(dsn)
        except psycopg2.ProgrammingError:
            raise StoreError("the PostgreSQL DSN is malformed") from None
        self._dsn = dsn
        self._defaults = {key: value for key, value in
                          (("connect_timeout", CONNECT_TIMEOUT), ("application_name", "aisoc-inboxd"))
                          if key not in params}
        host = params.get("host") or params.get("hostaddr") or "local socket"
        self._location = (f"PostgreSQL at {host}:{params.get('port', '5432')}"
                          f"/{params.get('dbname', '')} as {params.get('user', '(default user)')}")

    def _make_pool(self) -> ConnectionPool:
        return ConnectionPool("psycopg2", self._dsn, cp_min=1, cp_max=POOL_MAX, cp_reconnect=True,
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

    def invalidation_watcher(self, on_invalidate: OnInvalidate, clock: Any) -> Service:
        """
        LISTENs for the fingerprints the retirement trigger NOTIFYs, from any instance or writer.
        """
        return PostgresInvalidationListener(
            lambda: psycopg2.connect(self._dsn, **self._defaults), on_invalidate, self._reactor)

    def broadcast_invalidation(self, fingerprint: str) -> Deferred[None]:
        """
        Tell every instance (this one included) to forget C{fingerprint} now.
        """
        return self._run(self._notify, fingerprint)

    def _notify(self, txn: Transaction, fingerprint: str) -> None:
        txn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, fingerprint))

