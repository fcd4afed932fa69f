"""
The adbapi connection pool both stores run on, with one change: a connection that is already gone
when its failed transaction is rolled back (the server went away, or the store shut it after a call
timeout) is dropped from the pool quietly, and the next call on that thread opens a new one.

adbapi's own L{twisted.enterprise.adbapi.Connection} logs two "Rollback failed" tracebacks for every
such connection; the failure itself already reaches the caller as a L{aisoc_inboxd.store.StoreError}
and the store's health log, so an outage reads as a few lines rather than a traceback per connection.
"""
from __future__ import annotations

from typing import Any

from twisted.enterprise.adbapi import ConnectionPool


class PooledConnection:
    """
    The DB-API connection of the calling pool thread, as adbapi's L{Transaction} uses it (the
    pool's C{connectionFactory}: built on a pool thread for each call).
    """

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        self._connection = pool.connect()  # this thread's, opened on its first call

    def cursor(self) -> Any:
        return self._connection.cursor()

    def commit(self) -> None:
        self._connection.commit()

    def rollback(self) -> None:
        """
        Roll the failed transaction back, or drop a connection that cannot do even that: the error
        that failed the transaction is what the caller gets, not this one.
        """
        try:
            self._connection.rollback()
        except self._pool.dbapi.Error:
            self._pool.disconnect(self._connection)

    def reconnect(self) -> None:
        """
        Replace this thread's connection (adbapi's L{Transaction} asks when a cursor cannot be made).
        """
        self._pool.disconnect(self._connection)
        self._connection = self._pool.connect()

    def close(self) -> None:
        """
        Nothing: the pool keeps the thread's connection for its next call.
        """


class StorePool(ConnectionPool):
    connectionFactory = PooledConnection
