"""
PostgreSQL fixtures: a fresh database per test, owned by a fresh non-superuser login role, both
dropped afterwards.

The server comes from C{AISOC_TEST_PG_DSN} (default: C{postgres} on 127.0.0.1:5432, trust auth); its
user must be able to create roles and databases. The tests connect as the new role because a superuser
bypasses row-level security. When the server is down the tests skip, saying so, unless
C{AISOC_TEST_PG_REQUIRED=1} (CI) turns that into a failure. Names carry the prefix
C{aisoc_test_store_} so tests never touch what others keep on a shared server.
"""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from typing import Any, Iterator

import psycopg2
import pytest
from psycopg2 import sql
from psycopg2.extensions import make_dsn, parse_dsn

DEFAULT_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"

__all__ = ["PgDatabase", "pg_admin_dsn", "pg_database", "pg_query"]


@dataclass(frozen=True)
class PgDatabase:
    """
    @ivar name: the database and its owner role (same name).
    @ivar dsn: the owner role on this database: not a superuser, subject to RLS.
    @ivar admin_dsn: the superuser on this database.
    """

    name: str
    dsn: str
    admin_dsn: str


@pytest.fixture(scope="session")
def pg_admin_dsn() -> str:
    """
    The superuser DSN of the test server; skips (or fails, in CI) when the server is not up.
    """
    dsn = os.environ.get("AISOC_TEST_PG_DSN", DEFAULT_ADMIN_DSN)
    try:
        psycopg2.connect(dsn, connect_timeout=3).close()
    except psycopg2.OperationalError as e:
        params = parse_dsn(dsn)
        reason = (f"PostgreSQL at {params.get('host', 'local socket')}:{params.get('port', '5432')} "
                  f"is not reachable ({str(e).strip().splitlines()[0]}); set AISOC_TEST_PG_DSN")
        if os.environ.get("AISOC_TEST_PG_REQUIRED") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return dsn


@pytest.fixture
def pg_database(pg_admin_dsn: str) -> Iterator[PgDatabase]:
    """
    A fresh database owned by a fresh non-superuser, non-BYPASSRLS login role.
    """
    name = f"aisoc_test_store_{secrets.token_hex(6)}"
    password = secrets.token_hex(16)
    ident = sql.Identifier(name)
    _admin(pg_admin_dsn,
           sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE PASSWORD {}")
           .format(ident, sql.Literal(password)),
           sql.SQL("CREATE DATABASE {} OWNER {}").format(ident, ident))
    try:
        yield PgDatabase(name=name,
                         dsn=make_dsn(pg_admin_dsn, user=name, password=password, dbname=name),
                         admin_dsn=make_dsn(pg_admin_dsn, dbname=name))
    finally:
        _admin(pg_admin_dsn,
               sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident),
               sql.SQL("DROP ROLE IF EXISTS {}").format(ident))


def pg_query(dsn: str, statement: str, params: tuple[Any, ...] = (), *,
             tenant: str | None = None) -> tuple[list[tuple[Any, ...]], int]:
    """
    Run one statement in its own transaction (first entering C{tenant}'s context when given);
    return its rows (empty when it returns none) and its rowcount. Blocking: for test assertions.
    """
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            if tenant is not None:
                cur.execute("SELECT set_config('aisoc.tenant_id', %s, true)", (tenant,))
            cur.execute(statement, params)
            rows = cur.fetchall() if cur.description is not None else []
            return rows, cur.rowcount
    finally:
        conn.close()


def _admin(dsn: str, *statements: sql.Composable) -> None:
    conn = psycopg2.connect(dsn)
    conn.autocommit = True  # CREATE/DROP DATABASE cannot run inside a transaction
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
    finally:
        conn.close()
