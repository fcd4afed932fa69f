"""
A synchronous reachability check of the configured store, run before the reactor starts so an
unreachable PostgreSQL stops start-up with a clear message.
"""
from __future__ import annotations

import os

from aisoc_inboxd.config import Settings
from aisoc_inboxd.store import StoreError


def check_reachable(settings: Settings, timeout: int = 5) -> None:
    """
    Create the state directory (it holds the secret key file with either store, and the SQLite
    database without a DSN) and check PostgreSQL answers when a DSN is set.
    """
    state = settings.state_dir
    try:
        os.makedirs(state, exist_ok=True)
    except OSError as e:
        raise StoreError(f"state directory {state!r} cannot be created: {e.strerror}") from None
    if not os.access(state, os.W_OK):
        raise StoreError(f"state directory {state!r} is not writable")
    if settings.database.dsn:
        import psycopg2

        try:
            psycopg2.connect(settings.database.dsn, connect_timeout=timeout).close()
        except psycopg2.Error as e:
            raise StoreError(f"PostgreSQL is unreachable ({describe_dsn(settings.database.dsn)}): "
                             f"{str(e).strip().splitlines()[0]}") from None


def describe_dsn(dsn: str) -> str:
    """
    Host, port and database of a DSN, never its password.
    """
    from psycopg2.extensions import parse_dsn

    try:
        parts = parse_dsn(dsn)
    except Exception:
        return "an unparseable DSN"
    return (f"host={parts.get('host', 'localhost')} port={parts.get('port', '5432')} "
            f"dbname={parts.get('dbname', parts.get('user', '?'))}")
