"""
The embedded SQLite store beside another connection that holds the write lock (the CLI, an operator's
sqlite3 shell, another worker): reads never wait for it, and a write gives up before its caller does,
so nothing it wanted lands after its caller was told 503. A real SQLite file, a real second connection.
"""
from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
import pytest_twisted
from cryptography.fernet import Fernet
from twisted.internet.defer import gatherResults, maybeDeferred
from twisted.internet.task import deferLater

from aisoc_inboxd.store import StoreError, TokenRecord
from aisoc_inboxd.store.secrets import SecretBox
from aisoc_inboxd.store.sqlite import SqliteStore
from aisoc_inboxd.tokens import fingerprint, mint_token

CALL_TIMEOUT = 1.0
TOKEN = TokenRecord(fingerprint=fingerprint(mint_token()), tenant_id="acme", template_id="generic-json")


@pytest_twisted.async_yield_fixture
async def store(reactor: Any, tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(str(tmp_path / "inboxd.sqlite3"), SecretBox(Fernet.generate_key()), reactor, CALL_TIMEOUT)
    s.startService()
    try:
        await s.upgrade()
        await s.insert_token(TOKEN)
        yield s
    finally:
        await maybeDeferred(s.stopService)


def hold_write_lock(store: SqliteStore) -> sqlite3.Connection:
    """
    Another connection in the middle of a write transaction (as the CLI is while it mints).
    """
    other = sqlite3.connect(store._path, isolation_level=None)  # type: ignore[attr-defined]
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO tenant_inbox_tokens (fingerprint, tenant_id, template_id, created_at) "
                  "VALUES (?, 'acme', 'generic-json', 0)", (fingerprint(mint_token()),))
    return other


@pytest_twisted.ensureDeferred
async def test_reads_answer_while_another_connection_holds_the_write_lock(reactor: Any, store: SqliteStore) -> None:
    """While another connection holds the write lock for longer than the call timeout, token lookups
    (and the other reads) answer at once — also while this store's own write waits for the lock."""
    other = hold_write_lock(store)
    try:
        started = time.monotonic()
        waiting_write = store.claim_idempotency_key(TOKEN.fingerprint, "k-1", time.time(), 120, "owner-a")
        waiting_write.addErrback(lambda failure: failure.trap(StoreError))
        record, tokens, _ = await gatherResults([store.resolve(TOKEN.fingerprint), store.list_tokens("acme"),
                                                 store.push_totals("acme", 0)])
        assert record == TOKEN and tokens == [TOKEN]
        assert time.monotonic() - started < CALL_TIMEOUT / 2
        await waiting_write
    finally:
        other.rollback()
        other.close()


@pytest_twisted.ensureDeferred
async def test_a_write_gives_up_before_its_caller_and_never_lands_later(reactor: Any, store: SqliteStore) -> None:
    """A write that cannot get the lock fails with a StoreError within the call timeout, and when the
    other connection lets go of the lock later, nothing of that write appears: it did not keep waiting
    behind its caller's back (an idempotency claim landing after its request got 503)."""
    other = hold_write_lock(store)
    try:
        started = time.monotonic()
        with pytest.raises(StoreError) as raised:
            await store.claim_idempotency_key(TOKEN.fingerprint, "k-1", time.time(), 120, "owner-a")
        assert "locked" in str(raised.value) and raised.value.reason != "timeout"
        assert time.monotonic() - started < CALL_TIMEOUT
        await deferLater(reactor, CALL_TIMEOUT, lambda: None)
    finally:
        other.commit()
        other.close()
    await deferLater(reactor, 0.5, lambda: None)
    with sqlite3.connect(store._path) as check:  # type: ignore[attr-defined]
        assert check.execute("SELECT count(*) FROM inbox_idempotency_keys").fetchone() == (0,)
