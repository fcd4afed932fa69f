"""
The token store contract: one suite, run against the SQLite store and the PostgreSQL store, plus the
PostgreSQL-only proofs that row-level security holds at the SQL level, and the secret box.
"""
from __future__ import annotations

import hashlib
import os
import socket
import sqlite3
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import psycopg2
import pytest
import pytest_twisted
from cryptography.fernet import Fernet
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import capturedLogs

from aisoc_inboxd.store import ImapConnectorRecord, PushBucket, PushTotals, StoreError, TokenRecord
from aisoc_inboxd.store._adbapi import AdbapiStore
from aisoc_inboxd.store.migrations import Migration, load_migrations
from aisoc_inboxd.store.postgres import PostgresStore
from aisoc_inboxd.store.secrets import SecretBox
from aisoc_inboxd.store.sqlite import SqliteStore

from tests.support.postgres import PgDatabase, pg_query

T0 = 1_700_000_000.0


def fingerprint(name: str) -> str:
    return hashlib.sha256(f"aisoc_inbox_{name}".encode()).hexdigest()


def token(name: str, tenant: str = "tenant-a", created_at: float = T0, **fields: Any) -> TokenRecord:
    return TokenRecord(fingerprint=fingerprint(name), tenant_id=tenant, template_id="generic",
                       label=f"label {name}", created_at=created_at, **fields)


def closed_port() -> int:
    """
    A localhost TCP port nothing listens on (bound, then released).
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Backend:
    """
    One store implementation under test: how to build it, and a raw look at what it persisted.
    """

    name: str
    make: Callable[[SecretBox], AdbapiStore]
    raw_secret: Callable[[TokenRecord], bytes | None]
    make_unreachable: Callable[[SecretBox], tuple[AdbapiStore, str, str]]
    """A store whose data cannot be reached, the place its error must name, a string it must not."""


def sqlite_backend(tmp_path: Path, reactor: Any) -> Backend:
    path = tmp_path / "tokens.sqlite3"

    def raw_secret(record: TokenRecord) -> bytes | None:
        with sqlite3.connect(path) as conn:
            row = conn.execute("SELECT signing_secret FROM tenant_inbox_tokens WHERE fingerprint = ?",
                               (record.fingerprint,)).fetchone()
        return None if row[0] is None else bytes(row[0])

    def make_unreachable(box: SecretBox) -> tuple[AdbapiStore, str, str]:
        missing = tmp_path / "no-such-dir" / "tokens.sqlite3"
        return SqliteStore(str(missing), box, reactor), str(missing), "\0"

    return Backend("sqlite", lambda box: SqliteStore(str(path), box, reactor), raw_secret,
                   make_unreachable)


def postgres_backend(db: PgDatabase, reactor: Any) -> Backend:
    def raw_secret(record: TokenRecord) -> bytes | None:
        rows, _ = pg_query(db.dsn, "SELECT signing_secret FROM tenant_inbox_tokens WHERE fingerprint = %s",
                           (record.fingerprint,), tenant=record.tenant_id)
        return None if rows[0][0] is None else bytes(rows[0][0])

    def make_unreachable(box: SecretBox) -> tuple[AdbapiStore, str, str]:
        port = closed_port()
        dsn = f"postgresql://aisoc:hunter2-password@127.0.0.1:{port}/tokens"
        return PostgresStore(dsn, box, reactor), f"127.0.0.1:{port}", "hunter2-password"

    return Backend("postgres", lambda box: PostgresStore(db.dsn, box, reactor), raw_secret,
                   make_unreachable)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, reactor: Any) -> Backend:
    """
    Each store in turn: SQLite in C{tmp_path}, PostgreSQL in a fresh database as a non-superuser.
    """
    if request.param == "sqlite":
        return sqlite_backend(tmp_path, reactor)
    return postgres_backend(request.getfixturevalue("pg_database"), reactor)


@pytest.fixture
def box() -> SecretBox:
    return SecretBox(Fernet.generate_key())


@pytest_twisted.async_yield_fixture
async def store(backend: Backend, box: SecretBox) -> AsyncIterator[AdbapiStore]:
    """
    A started store with its schema migrated (as the non-superuser role, for PostgreSQL).
    """
    s = backend.make(box)
    s.startService()
    try:
        await s.upgrade()
        yield s
    finally:
        await maybeDeferred(s.stopService)


async def failure_of(d: Deferred[Any], kind: type[BaseException]) -> BaseException:
    with pytest.raises(kind) as raised:
        await d
    return raised.value


# -- schema -------------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_upgrade_reports_latest_version_and_is_idempotent(backend: Backend, box: SecretBox) -> None:
    """upgrade() on an empty database applies every migration and fires with the version; again, it changes nothing."""
    latest = len(load_migrations(backend.name))
    s = backend.make(box)
    s.startService()
    try:
        assert await s.upgrade() == latest >= 1
        await s.insert_token(token("kept"))
        assert await s.upgrade() == latest
        assert await s.resolve(fingerprint("kept")) is not None
    finally:
        await maybeDeferred(s.stopService)


@pytest_twisted.ensureDeferred
async def test_failed_migration_rolls_back_whole(backend: Backend, box: SecretBox,
                                                 store: AdbapiStore) -> None:
    """A migration that fails part-way leaves nothing behind, so it applies cleanly once fixed."""
    latest = len(load_migrations(backend.name))
    s = backend.make(box)
    half = "CREATE TABLE half_done (x integer);\n"
    s._migrations = (*s._migrations, Migration(latest + 1, "broken", half + "SELECT no_such_function();\n"))
    s.startService()
    try:
        await failure_of(s.upgrade(), StoreError)
        assert await store.upgrade() == latest
        s._migrations = (*s._migrations[:-1], Migration(latest + 1, "fixed", half))
        assert await s.upgrade() == latest + 1
    finally:
        await maybeDeferred(s.stopService)


# -- resolve / insert ---------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_insert_then_resolve_round_trips_record_and_secret(store: AdbapiStore) -> None:
    """A stored token resolves to the same record, its signing secret decrypted; an unsigned one has none."""
    signed = token("signed", signing_secret=b"whsec-\x00\xffbytes")
    unsigned = token("unsigned", created_at=T0 + 0.5)
    await store.insert_token(signed)
    await store.insert_token(unsigned)
    assert await store.resolve(signed.fingerprint) == signed
    assert await store.resolve(unsigned.fingerprint) == unsigned


@pytest_twisted.ensureDeferred
async def test_hec_acks_option_round_trips_and_survives_rotation(store: AdbapiStore) -> None:
    """A token minted with HEC indexer acknowledgement resolves and lists with it on (others off), and its successor keeps it."""
    acked = token("acked", hec_acks=True)
    plain = token("plain", created_at=T0 + 0.5)
    await store.insert_token(acked)
    await store.insert_token(plain)
    assert (await store.resolve(acked.fingerprint)).hec_acks is True  # type: ignore[union-attr]
    assert (await store.resolve(plain.fingerprint)).hec_acks is False  # type: ignore[union-attr]
    assert [r.hec_acks for r in await store.list_tokens("tenant-a")] == [True, False]
    successor = token("acked-next", created_at=T0 + 1, hec_acks=True)
    assert await store.rotate_token("tenant-a", acked.fingerprint, successor, T0 + 2) is True
    assert await store.resolve(successor.fingerprint) == successor


@pytest_twisted.ensureDeferred
async def test_signing_secret_is_stored_sealed(backend: Backend, box: SecretBox,
                                               store: AdbapiStore) -> None:
    """The database holds Fernet ciphertext of the signing secret, never the secret itself."""
    record = token("sealed", signing_secret=b"plain-secret-value")
    await store.insert_token(record)
    raw = backend.raw_secret(record)
    assert raw is not None and b"plain-secret-value" not in raw
    assert box.open(raw) == b"plain-secret-value"


@pytest_twisted.ensureDeferred
async def test_resolve_unknown_fingerprint_is_none(store: AdbapiStore) -> None:
    """A fingerprint that was never stored resolves to None."""
    await store.insert_token(token("known"))
    assert await store.resolve(fingerprint("unknown")) is None


@pytest_twisted.ensureDeferred
async def test_duplicate_fingerprint_is_a_store_error(store: AdbapiStore) -> None:
    """Inserting a fingerprint twice fails with StoreError and keeps the first record."""
    first = token("dup")
    await store.insert_token(first)
    await failure_of(store.insert_token(replace(first, template_id="other")), StoreError)
    assert await store.resolve(first.fingerprint) == first


@pytest_twisted.ensureDeferred
async def test_wrong_secret_key_is_a_store_error(backend: Backend, store: AdbapiStore) -> None:
    """A store opened with another key file fails with StoreError instead of returning a bad secret."""
    await store.insert_token(token("signed", signing_secret=b"s"))
    other = backend.make(SecretBox(Fernet.generate_key()))
    other.startService()
    try:
        error = await failure_of(other.resolve(fingerprint("signed")), StoreError)
        assert "different key" in str(error)
    finally:
        await maybeDeferred(other.stopService)


# -- rotate / revoke / list ---------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_rotate_swaps_old_token_for_new(store: AdbapiStore) -> None:
    """After rotation the old fingerprint stops resolving, the new one resolves, and both are listed."""
    old = token("old", signing_secret=b"s1")
    new = token("new", created_at=T0 + 60, signing_secret=b"s2")
    await store.insert_token(old)
    assert await store.rotate_token("tenant-a", old.fingerprint, new, now=T0 + 60) is True
    assert await store.resolve(old.fingerprint) is None
    assert await store.resolve(new.fingerprint) == new
    assert await store.list_tokens("tenant-a") == [replace(old, rotated_at=T0 + 60), new]


@pytest_twisted.ensureDeferred
async def test_rotate_of_missing_or_inactive_token_inserts_nothing(store: AdbapiStore) -> None:
    """Rotating an unknown, revoked or already rotated token returns False and stores no successor."""
    await store.insert_token(token("revoked"))
    await store.revoke_token("tenant-a", fingerprint("revoked"), now=T0 + 1)
    await store.insert_token(token("rotated"))
    await store.rotate_token("tenant-a", fingerprint("rotated"), token("successor"), now=T0 + 2)
    for name in ("never-stored", "revoked", "rotated"):
        assert await store.rotate_token("tenant-a", fingerprint(name), token(f"from-{name}"),
                                        now=T0 + 3) is False
        assert await store.resolve(fingerprint(f"from-{name}")) is None
    assert len(await store.list_tokens("tenant-a")) == 3


@pytest_twisted.ensureDeferred
async def test_rotate_is_atomic(store: AdbapiStore) -> None:
    """When the successor cannot be stored, the rotation is undone and the old token still resolves."""
    old, taken = token("old"), token("taken")
    await store.insert_token(old)
    await store.insert_token(taken)
    await failure_of(store.rotate_token("tenant-a", old.fingerprint, replace(taken, label="clash"),
                                        now=T0 + 5), StoreError)
    assert await store.resolve(old.fingerprint) == old


@pytest_twisted.ensureDeferred
async def test_rotate_refuses_successor_in_another_tenant(store: AdbapiStore) -> None:
    """A rotation cannot hand the successor token to a different tenant."""
    await store.insert_token(token("old"))
    await failure_of(store.rotate_token("tenant-a", fingerprint("old"), token("new", tenant="tenant-b"),
                                        now=T0 + 1), ValueError)
    assert await store.resolve(fingerprint("old")) is not None


@pytest_twisted.ensureDeferred
async def test_revoke_stops_resolution_once(store: AdbapiStore) -> None:
    """Revoking an active token makes it unresolvable and records the time; revoking again returns False."""
    record = token("victim")
    await store.insert_token(record)
    assert await store.revoke_token("tenant-a", record.fingerprint, now=T0 + 9) is True
    assert await store.resolve(record.fingerprint) is None
    assert await store.revoke_token("tenant-a", record.fingerprint, now=T0 + 10) is False
    assert await store.list_tokens("tenant-a") == [replace(record, revoked_at=T0 + 9)]


@pytest_twisted.ensureDeferred
async def test_list_is_oldest_first_with_inactive_tokens(store: AdbapiStore) -> None:
    """list_tokens returns every token of the tenant, active or not, ordered by creation time."""
    for name, created in (("middle", T0 + 10), ("newest", T0 + 20), ("oldest", T0)):
        await store.insert_token(token(name, created_at=created))
    await store.revoke_token("tenant-a", fingerprint("middle"), now=T0 + 30)
    listed = await store.list_tokens("tenant-a")
    assert [r.fingerprint for r in listed] == [fingerprint(n) for n in ("oldest", "middle", "newest")]
    assert [r.active for r in listed] == [True, False, True]


@pytest_twisted.ensureDeferred
async def test_tenant_cannot_read_rotate_or_revoke_another_tenants_tokens(store: AdbapiStore) -> None:
    """Tenant A's context neither lists nor rotates nor revokes tenant B's token, which keeps resolving."""
    theirs = token("theirs", tenant="tenant-b")
    await store.insert_token(token("mine"))
    await store.insert_token(theirs)
    assert [r.fingerprint for r in await store.list_tokens("tenant-a")] == [fingerprint("mine")]
    assert await store.rotate_token("tenant-a", theirs.fingerprint, token("stolen"), now=T0 + 1) is False
    assert await store.revoke_token("tenant-a", theirs.fingerprint, now=T0 + 1) is False
    assert await store.resolve(theirs.fingerprint) == theirs
    assert await store.resolve(fingerprint("stolen")) is None
    assert await store.list_tokens("tenant-b") == [theirs]


# -- IMAP connectors ----------------------------------------------------------------------------

def connector(uid: str, tenant: str = "tenant-a", created_at: float = T0, **fields: Any) -> ImapConnectorRecord:
    return ImapConnectorRecord(uid=uid, tenant_id=tenant, host="imap.example.test", username=f"{uid}@example.test",
                               password=f"app-password-{uid}", created_at=created_at, **fields)


@pytest_twisted.ensureDeferred
async def test_imap_connectors_round_trip_with_defaults_and_per_tenant_listing(store: AdbapiStore) -> None:
    """A stored connector lists back equal (the spec's defaults kept), only in its own tenant, oldest first."""
    first = connector("00000000000000a1")
    second = connector("00000000000000a2", created_at=T0 + 5, port=143, use_ssl=False, mailbox="Alerts",
                       max_messages=7, poll_interval=15.0, template_id="microsoft-defender-email", label="m365")
    await store.insert_imap_connector(second)
    await store.insert_imap_connector(first)
    await store.insert_imap_connector(connector("00000000000000b1", tenant="tenant-b"))
    assert await store.list_imap_connectors("tenant-a") == [first, second]
    assert (first.port, first.mailbox, first.max_messages, first.use_ssl) == (993, "INBOX", 50, True)
    assert [c.uid for c in await store.list_imap_connectors("tenant-b")] == ["00000000000000b1"]


@pytest_twisted.ensureDeferred
async def test_imap_password_is_stored_sealed(backend: Backend, box: SecretBox, store: AdbapiStore) -> None:
    """The database holds Fernet ciphertext of a connector's password, never the password."""
    await store.insert_imap_connector(connector("00000000000000c1"))
    if backend.name == "sqlite":
        with sqlite3.connect(store._path) as conn:  # type: ignore[attr-defined]
            raw = bytes(conn.execute("SELECT password FROM tenant_imap_connectors").fetchone()[0])
    else:
        raw = bytes(pg_query(store._dsn, "SELECT password FROM tenant_imap_connectors",  # type: ignore[attr-defined]
                             tenant="tenant-a")[0][0][0])
    assert b"app-password" not in raw
    assert box.open(raw) == b"app-password-00000000000000c1"


@pytest_twisted.ensureDeferred
async def test_imap_remove_is_tenant_scoped(store: AdbapiStore) -> None:
    """A tenant removes its own connector once; it cannot remove another tenant's."""
    await store.insert_imap_connector(connector("00000000000000d1"))
    await store.insert_imap_connector(connector("00000000000000d2", tenant="tenant-b"))
    assert await store.remove_imap_connector("tenant-a", "00000000000000d2") is False
    assert await store.remove_imap_connector("tenant-a", "00000000000000d1") is True
    assert await store.remove_imap_connector("tenant-a", "00000000000000d1") is False
    assert [c.uid for c in await store.imap_connectors_to_poll()] == ["00000000000000d2"]


@pytest_twisted.ensureDeferred
async def test_imap_connectors_to_poll_lists_every_tenant(store: AdbapiStore) -> None:
    """The poller's read returns every tenant's connectors, oldest first, passwords decrypted."""
    await store.insert_imap_connector(connector("00000000000000e2", tenant="tenant-b", created_at=T0 + 1))
    await store.insert_imap_connector(connector("00000000000000e1"))
    polled = await store.imap_connectors_to_poll()
    assert [(c.uid, c.tenant_id) for c in polled] == [("00000000000000e1", "tenant-a"),
                                                      ("00000000000000e2", "tenant-b")]
    assert polled[0].password == "app-password-00000000000000e1"


@pytest_twisted.ensureDeferred
async def test_pg_imap_connectors_are_row_level_secured(store: AdbapiStore, backend: Backend) -> None:
    """In PostgreSQL a tenant context sees only its connectors, none without context, and the poll function is read-only."""
    if backend.name != "postgres":
        pytest.skip("row-level security is PostgreSQL's")
    dsn = store._dsn  # type: ignore[attr-defined]
    await store.insert_imap_connector(connector("00000000000000f1"))
    await store.insert_imap_connector(connector("00000000000000f2", tenant="tenant-b"))
    assert pg_query(dsn, "SELECT uid FROM tenant_imap_connectors", tenant="tenant-a")[0] == [("00000000000000f1",)]
    assert pg_query(dsn, "SELECT count(*) FROM tenant_imap_connectors")[0] == [(0,)]
    assert pg_query(dsn, "DELETE FROM tenant_imap_connectors WHERE tenant_id = 'tenant-b'", tenant="tenant-a")[1] == 0
    rows, _ = pg_query(dsn, "SELECT (SELECT count(*) FROM aisoc_imap_connectors_to_poll()), "
                            "(SELECT count(*) FROM tenant_imap_connectors)")
    assert rows == [(2, 0)]
    rows, _ = pg_query(dsn, "SELECT prosecdef, proconfig FROM pg_proc WHERE proname = 'aisoc_imap_connectors_to_poll'")
    assert rows == [(True, ["search_path=pg_catalog, public, pg_temp"])]


# -- idempotency keys ---------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_an_idempotency_claim_is_settled_only_by_its_owner(store: AdbapiStore) -> None:
    """A claim is held by the request that made it: another owner's release or completion changes
    nothing, while the owner's release frees the key for the next claim and its completion records
    the reply every later claim gets back."""
    fp = fingerprint("k1")
    assert await store.claim_idempotency_key(fp, "delivery-1", T0, 120, "owner-a") == (True, None, None)
    assert await store.claim_idempotency_key(fp, "delivery-1", T0 + 1, 120, "owner-b") == (False, None, None)
    assert await store.release_idempotency_key(fp, "delivery-1", "owner-b") == 0
    assert await store.complete_idempotency_key(fp, "delivery-1", "owner-b", 200, '{"n": 2}', T0 + 86400) == 0
    assert await store.release_idempotency_key(fp, "delivery-1", "owner-a") == 1
    assert await store.claim_idempotency_key(fp, "delivery-1", T0 + 2, 120, "owner-b") == (True, None, None)
    assert await store.complete_idempotency_key(fp, "delivery-1", "owner-a", 200, '{"n": 1}', T0 + 86400) == 0
    assert await store.complete_idempotency_key(fp, "delivery-1", "owner-b", 200, '{"n": 2}', T0 + 86400) == 1
    assert await store.release_idempotency_key(fp, "delivery-1", "owner-b") == 0  # a recorded reply stays
    assert await store.claim_idempotency_key(fp, "delivery-1", T0 + 3, 120, "owner-c") == (False, 200, '{"n": 2}')


@pytest_twisted.ensureDeferred
async def test_an_expired_claim_is_taken_over(store: AdbapiStore) -> None:
    """A claim whose lease ran out (its request died) no longer blocks the key, and its owner can no
    longer settle it once another request took it over."""
    fp = fingerprint("k2")
    assert await store.claim_idempotency_key(fp, "delivery-2", T0, 120, "owner-a") == (True, None, None)
    assert await store.claim_idempotency_key(fp, "delivery-2", T0 + 121, 120, "owner-b") == (True, None, None)
    assert await store.release_idempotency_key(fp, "delivery-2", "owner-a") == 0
    assert await store.claim_idempotency_key(fp, "delivery-2", T0 + 122, 120, "owner-c") == (False, None, None)


# -- push stats ---------------------------------------------------------------------------------

def bucket(name: str, minute: int, requests: int = 1, errors: int = 0, seen: float = 0.0,
           template: str = "generic") -> PushBucket:
    start = T0 + 60 * minute
    return PushBucket(fingerprint=fingerprint(name), template_id=template, bucket_start=start,
                      requests=requests, errors=errors, last_seen=start + seen)


@pytest_twisted.ensureDeferred
async def test_push_stats_of_two_writers_add_up(backend: Backend, box: SecretBox, store: AdbapiStore) -> None:
    """Two store instances adding to the same bucket sum its requests and errors and keep the later last_seen."""
    other = backend.make(box)
    other.startService()
    try:
        await store.add_push_stats("tenant-a", [bucket("a1", 0, requests=3, errors=1, seen=40)])
        await other.add_push_stats("tenant-a", [bucket("a1", 0, requests=2, errors=2, seen=10),
                                                bucket("a1", 1, requests=5, seen=5)])
        await store.add_push_stats("tenant-a", [bucket("a1", 1, requests=1, errors=1, seen=1)])
    finally:
        await maybeDeferred(other.stopService)
    assert await store.push_totals("tenant-a", T0) == [
        PushTotals("tenant-a", fingerprint("a1"), "generic", requests=11, errors=4, last_seen=T0 + 65)]


@pytest_twisted.ensureDeferred
async def test_push_totals_count_from_since_and_keep_the_last_request(store: AdbapiStore) -> None:
    """Buckets before `since` add no requests or errors, yet an older last request is still reported, latest first."""
    await store.add_push_stats("tenant-a", [bucket("old", 0, requests=4, errors=4, seen=30),
                                            bucket("new", 0, requests=9), bucket("new", 10, requests=2, errors=1)])
    assert await store.push_totals("tenant-a", T0 + 60) == [
        PushTotals("tenant-a", fingerprint("new"), "generic", requests=2, errors=1, last_seen=T0 + 600),
        PushTotals("tenant-a", fingerprint("old"), "generic", requests=0, errors=0, last_seen=T0 + 30)]


@pytest_twisted.ensureDeferred
async def test_push_stats_are_tenant_scoped(store: AdbapiStore) -> None:
    """A tenant reads only its own tokens' stats, and counts written in another tenant's name never reach it."""
    await store.add_push_stats("tenant-a", [bucket("a1", 0, requests=2)])
    await store.add_push_stats("tenant-b", [bucket("b1", 0, requests=7), bucket("a1", 0, requests=100)])
    assert [(t.fingerprint, t.requests) for t in await store.push_totals("tenant-a", T0)] == [(fingerprint("a1"), 2)]
    assert {(t.fingerprint, t.requests) for t in await store.push_totals("tenant-b", T0)} == {
        (fingerprint("b1"), 7), (fingerprint("a1"), 100)}
    assert await store.push_totals("tenant-c", T0) == []


@pytest_twisted.ensureDeferred
async def test_all_push_totals_spans_tenants(store: AdbapiStore) -> None:
    """The status page's read returns every tenant's tokens, latest request first."""
    await store.add_push_stats("tenant-a", [bucket("a1", 0, requests=2, errors=1)])
    await store.add_push_stats("tenant-b", [bucket("b1", 3, requests=5, template="pagerduty")])
    assert await store.all_push_totals(T0) == [
        PushTotals("tenant-b", fingerprint("b1"), "pagerduty", requests=5, errors=0, last_seen=T0 + 180),
        PushTotals("tenant-a", fingerprint("a1"), "generic", requests=2, errors=1, last_seen=T0)]
    assert [t.requests for t in await store.all_push_totals(T0 + 120)] == [5, 0]


@pytest_twisted.ensureDeferred
async def test_status_tokens_are_the_live_ones_and_the_recently_retired(store: AdbapiStore) -> None:
    """The status page's token list, across tenants or for one: every active token (never used ones too)
    and those rotated or revoked since a time, newest first, at most a limit, without signing secrets."""
    await store.insert_token(token("a-old", signing_secret=b"s3cret"))
    await store.insert_token(token("a-new", created_at=T0 + 10))
    await store.insert_token(token("b1", tenant="tenant-b", created_at=T0 + 5, hec_acks=True))
    await store.insert_token(token("retired-long-ago", created_at=T0 - 100, revoked_at=T0 - 90))
    await store.insert_token(token("rotated-lately", created_at=T0 - 50, rotated_at=T0 + 20))
    every = await store.status_tokens(T0, None, 10)
    assert [r.fingerprint for r in every] == [fingerprint(n) for n in ("a-new", "b1", "a-old", "rotated-lately")]
    assert every[1] == token("b1", tenant="tenant-b", created_at=T0 + 5, hec_acks=True)
    assert every[2] == token("a-old")  # the secret stays in the store
    assert every[3].rotated_at == T0 + 20 and not every[3].active
    assert [r.fingerprint for r in await store.status_tokens(T0, "tenant-b", 10)] == [fingerprint("b1")]
    assert [r.fingerprint for r in await store.status_tokens(T0, None, 2)] == [fingerprint("a-new"), fingerprint("b1")]
    assert await store.status_tokens(T0, "tenant-c", 10) == []


@pytest_twisted.ensureDeferred
async def test_pg_status_tokens_read_only_through_their_function(store: AdbapiStore, backend: Backend) -> None:
    """In PostgreSQL the status page's cross-tenant read opens nothing else: without a tenant context a plain
    SELECT still sees no token and the read flag is off again after the call; the function is SECURITY
    DEFINER with a pinned search_path and has no column for the secret."""
    if backend.name != "postgres":
        pytest.skip("row-level security is PostgreSQL's")
    dsn = store._dsn  # type: ignore[attr-defined]
    await store.insert_token(token("a1", signing_secret=b"s3cret"))
    await store.insert_token(token("b1", tenant="tenant-b"))
    rows, _ = pg_query(dsn, "SELECT (SELECT count(*) FROM aisoc_status_tokens(now() - interval '1 day', '', 10)), "
                            "(SELECT count(*) FROM tenant_inbox_tokens), current_setting('aisoc.status_tokens', true)")
    assert rows == [(2, 0, "")]
    rows, _ = pg_query(dsn, "SELECT prosecdef, proconfig, proargnames FROM pg_proc "
                            "WHERE proname = 'aisoc_status_tokens'")
    [(definer, config, names)] = rows
    assert (definer, config) == (True, ["search_path=pg_catalog, public, pg_temp"])
    assert "signing_secret" not in names


@pytest_twisted.ensureDeferred
async def test_sweep_drops_old_buckets_but_keeps_each_tokens_newest(store: AdbapiStore) -> None:
    """Buckets before the cut go, except a token's newest one, so its last-seen time survives the window."""
    await store.add_push_stats("tenant-a", [bucket("a1", 0), bucket("a1", 1), bucket("a1", 2, seen=7),
                                            bucket("a2", 0), bucket("a2", 100)])
    await store.add_push_stats("tenant-b", [bucket("b1", 0), bucket("b1", 1, seen=3)])
    assert await store.sweep_push_stats(T0 + 60 * 50) == 4
    assert await store.sweep_push_stats(T0 + 60 * 50) == 0
    totals = await store.push_totals("tenant-a", 0)
    assert [(t.fingerprint, t.requests, t.last_seen) for t in totals] == [
        (fingerprint("a2"), 1, T0 + 6000), (fingerprint("a1"), 1, T0 + 127)]
    assert [(t.requests, t.last_seen) for t in await store.push_totals("tenant-b", 0)] == [(1, T0 + 63)]


@pytest_twisted.ensureDeferred
async def test_pg_push_stats_are_row_level_secured(store: AdbapiStore, backend: Backend) -> None:
    """In PostgreSQL a tenant context sees and changes only its stats, none without context, and the read and
    sweep functions are SECURITY DEFINER with a pinned search_path."""
    if backend.name != "postgres":
        pytest.skip("row-level security is PostgreSQL's")
    dsn = store._dsn  # type: ignore[attr-defined]
    await store.add_push_stats("tenant-a", [bucket("a1", 0)])
    await store.add_push_stats("tenant-b", [bucket("b1", 0)])
    assert pg_query(dsn, "SELECT tenant_id FROM tenant_inbox_push_stats", tenant="tenant-a")[0] == [("tenant-a",)]
    assert pg_query(dsn, "SELECT count(*) FROM tenant_inbox_push_stats")[0] == [(0,)]
    assert pg_query(dsn, "UPDATE tenant_inbox_push_stats SET requests = 0 WHERE tenant_id = 'tenant-b'",
                    tenant="tenant-a")[1] == 0
    assert pg_query(dsn, "DELETE FROM tenant_inbox_push_stats", tenant="tenant-a")[1] == 1
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        pg_query(dsn, "INSERT INTO tenant_inbox_push_stats VALUES ('tenant-b', %s, now(), 'generic', 1, 0, now())",
                 (fingerprint("planted"),), tenant="tenant-a")
    rows, _ = pg_query(dsn, "SELECT proname, prosecdef, proconfig FROM pg_proc "
                            "WHERE proname IN ('aisoc_push_stats_since', 'aisoc_push_stats_sweep') ORDER BY proname")
    assert rows == [(name, True, ["search_path=pg_catalog, public, pg_temp"])
                    for name in ("aisoc_push_stats_since", "aisoc_push_stats_sweep")]


# -- failure modes ------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_unreachable_store_fails_fast_with_store_error(backend: Backend, box: SecretBox) -> None:
    """upgrade() on an unreachable database fails within seconds with a StoreError naming where, never the password."""
    s, where, secret = backend.make_unreachable(box)
    s.startService()
    try:
        started = time.monotonic()
        error = await failure_of(s.upgrade(), StoreError)
        assert time.monotonic() - started < 5
        assert where in str(error) and secret not in str(error)
    finally:
        await maybeDeferred(s.stopService)


@pytest_twisted.ensureDeferred
async def test_store_that_is_not_running_is_a_store_error(backend: Backend, box: SecretBox) -> None:
    """Calls before startService fail with StoreError instead of queueing forever."""
    await failure_of(backend.make(box).resolve(fingerprint("any")), StoreError)


# -- PostgreSQL: row-level security at the SQL level ----------------------------------------------

@pytest_twisted.async_yield_fixture
async def pg_store(pg_database: PgDatabase, box: SecretBox, reactor: Any) -> AsyncIterator[PostgresStore]:
    """
    A migrated PostgreSQL store holding one token of tenant A and one (with a secret) of tenant B.
    """
    s = PostgresStore(pg_database.dsn, box, reactor)
    s.startService()
    try:
        await s.upgrade()
        await s.insert_token(token("a1"))
        await s.insert_token(token("b1", tenant="tenant-b", signing_secret=b"b-secret"))
        yield s
    finally:
        await maybeDeferred(s.stopService)


@pytest_twisted.ensureDeferred
async def test_pg_tenant_context_hides_and_protects_other_tenants_rows(pg_store: PostgresStore,
                                                                       pg_database: PgDatabase) -> None:
    """As the non-superuser, tenant A's context sees no B rows and UPDATE/DELETE/INSERT of B rows do nothing."""
    dsn = pg_database.dsn
    rows, _ = pg_query(dsn, "SELECT tenant_id FROM tenant_inbox_tokens", tenant="tenant-a")
    assert rows == [("tenant-a",)]
    rows, _ = pg_query(dsn, "SELECT count(*) FROM tenant_inbox_tokens WHERE tenant_id = 'tenant-b'",
                       tenant="tenant-a")
    assert rows == [(0,)]
    _, changed = pg_query(dsn, "UPDATE tenant_inbox_tokens SET revoked_at = now() WHERE tenant_id = 'tenant-b'",
                          tenant="tenant-a")
    assert changed == 0
    _, changed = pg_query(dsn, "DELETE FROM tenant_inbox_tokens WHERE tenant_id = 'tenant-b'",
                          tenant="tenant-a")
    assert changed == 0
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        pg_query(dsn, "INSERT INTO tenant_inbox_tokens (fingerprint, tenant_id, template_id, created_at) "
                      "VALUES (%s, 'tenant-b', 'generic', now())", (fingerprint("planted"),), tenant="tenant-a")
    assert await pg_store.resolve(fingerprint("b1")) is not None


@pytest_twisted.ensureDeferred
async def test_pg_without_tenant_context_no_row_is_visible(pg_store: PostgresStore,
                                                           pg_database: PgDatabase) -> None:
    """As the non-superuser (the table owner), a query without a tenant context sees and changes nothing."""
    rows, _ = pg_query(pg_database.dsn, "SELECT count(*) FROM tenant_inbox_tokens")
    assert rows == [(0,)]
    _, changed = pg_query(pg_database.dsn, "UPDATE tenant_inbox_tokens SET label = 'x'")
    assert changed == 0
    rows, _ = pg_query(pg_database.admin_dsn, "SELECT count(*) FROM tenant_inbox_tokens")
    assert rows == [(2,)]


@pytest_twisted.ensureDeferred
async def test_pg_resolve_function_returns_one_active_row_and_cannot_list(pg_store: PostgresStore,
                                                                         pg_database: PgDatabase) -> None:
    """aisoc_inbox_resolve_token returns the one active row for a full fingerprint, and nothing for anything else."""
    dsn = pg_database.dsn
    call = "SELECT tenant_id FROM aisoc_inbox_resolve_token(%s)"
    assert pg_query(dsn, call, (fingerprint("b1"),))[0] == [("tenant-b",)]
    for probe in (None, "", "%", "*", fingerprint("b1")[:8], fingerprint("b1").upper()):
        assert pg_query(dsn, call, (probe,))[0] == [], probe
    await pg_store.revoke_token("tenant-b", fingerprint("b1"), now=T0 + 1)
    assert pg_query(dsn, call, (fingerprint("b1"),))[0] == []
    rows, _ = pg_query(dsn, "SELECT (SELECT count(*) FROM aisoc_inbox_resolve_token(%s)), "
                            "(SELECT count(*) FROM tenant_inbox_tokens)", (fingerprint("a1"),))
    assert rows == [(1, 0)]


@pytest_twisted.ensureDeferred
async def test_pg_resolve_function_pins_a_safe_search_path(pg_store: PostgresStore,
                                                           pg_database: PgDatabase) -> None:
    """The SECURITY DEFINER resolve function carries its own search_path, ending with pg_temp."""
    rows, _ = pg_query(pg_database.dsn, "SELECT prosecdef, proconfig FROM pg_proc "
                                        "WHERE proname = 'aisoc_inbox_resolve_token'")
    assert rows == [(True, ["search_path=pg_catalog, public, pg_temp"])]


@pytest_twisted.ensureDeferred
async def test_pg_warns_when_connected_as_superuser(pg_database: PgDatabase, box: SecretBox,
                                                    reactor: Any) -> None:
    """upgrade() logs a warning that RLS is not enforced when connected as a superuser, and not otherwise."""
    warnings: dict[str, list[str]] = {}
    for name, dsn in (("owner", pg_database.dsn), ("superuser", pg_database.admin_dsn)):
        s = PostgresStore(dsn, box, reactor)
        s.startService()
        try:
            with capturedLogs() as events:
                await s.upgrade()
        finally:
            await maybeDeferred(s.stopService)
        warnings[name] = [e["log_format"] for e in events if "NOT enforced" in e.get("log_format", "")]
    assert len(warnings["superuser"]) == 1
    assert warnings["owner"] == []


@pytest_twisted.ensureDeferred
async def test_pg_unresponsive_server_fails_within_connect_timeout(box: SecretBox, reactor: Any) -> None:
    """A server that accepts TCP but never answers fails upgrade() with StoreError after connect_timeout."""
    port = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
    number = port.getHost().port
    s = PostgresStore(f"host=127.0.0.1 port={number} dbname=x user=x connect_timeout=2", box, reactor)
    s.startService()
    try:
        started = time.monotonic()
        error = await failure_of(s.upgrade(), StoreError)
        assert time.monotonic() - started < 8
        assert f"127.0.0.1:{number}" in str(error)
    finally:
        await maybeDeferred(s.stopService)
        await maybeDeferred(port.stopListening)


def test_pg_malformed_dsn_does_not_echo_it(box: SecretBox) -> None:
    """A malformed DSN fails at construction with StoreError that does not repeat the DSN (it may hold a password)."""
    with pytest.raises(StoreError) as raised:
        PostgresStore("host=db password=hunter2 garbage", box, None)  # type: ignore[arg-type]
    assert "hunter2" not in str(raised.value)


# -- the secret box ------------------------------------------------------------------------------

def test_secret_box_round_trip_and_key_file(tmp_path: Path) -> None:
    """from_key_file creates a 0600 key file once; a box from the same file opens what the first sealed."""
    path = tmp_path / "secret.key"
    first = SecretBox.from_key_file(path)
    assert os.stat(path).st_mode & 0o777 == 0o600
    sealed = first.seal(b"hmac secret")
    assert sealed != b"hmac secret"
    assert SecretBox.from_key_file(path).open(sealed) == b"hmac secret"


def test_secret_box_wrong_key_is_a_store_error(tmp_path: Path) -> None:
    """Opening with a different key (or an altered value) raises StoreError, not a garbled secret."""
    sealed = SecretBox.from_key_file(tmp_path / "a.key").seal(b"hmac secret")
    with pytest.raises(StoreError, match="different key"):
        SecretBox.from_key_file(tmp_path / "b.key").open(sealed)
    with pytest.raises(StoreError):
        SecretBox.from_key_file(tmp_path / "a.key").open(sealed[:-4] + b"AAAA")


def test_secret_box_rejects_a_corrupt_key_file(tmp_path: Path) -> None:
    """A key file that does not hold a Fernet key stops start-up with a StoreError naming the file."""
    path = tmp_path / "secret.key"
    path.write_bytes(b"not a key\n")
    with pytest.raises(StoreError, match="secret.key"):
        SecretBox.from_key_file(path)
