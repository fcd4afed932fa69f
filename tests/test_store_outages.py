"""
The daemon and a PostgreSQL that goes away: refused (the relay cut), silent for everyone (stalled),
or silent on the connections already open (forgotten by a firewall), and a flood of random tokens.
Every reply is a clean 503 or 429 within bounded time, cached tokens keep flowing, a revocation
still reaches the daemon well inside the cache TTL, and a flood reaches the database only at the
configured rate. A real PostgreSQL behind L{tests.support.tcp_relay.Relay}, the real daemon, real sockets.
"""
from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import psycopg2
import pytest
import pytest_twisted
import treq
from psycopg2.extensions import make_dsn, parse_dsn
from twisted.internet import defer
from twisted.internet.task import deferLater
from twisted.logger import LogLevel, capturedLogs, formatEvent

from aisoc_inboxd.config import DatabaseSettings, TokenCacheSettings
from aisoc_inboxd.store import StoreError
from aisoc_inboxd.store.invalidation import CHANNEL, PostgresInvalidationListener
from aisoc_inboxd.store.postgres import PostgresStore, connection_parameters
from aisoc_inboxd.store.secrets import SecretBox
from aisoc_inboxd.tokens import fingerprint, mint_token
from tests.support.daemon import RunningDaemon, daemon_settings, start_daemon
from tests.support.postgres import PgDatabase, pg_query
from tests.support.tcp_relay import Relay

BODY = b'{"id": "a1", "title": "Impossible travel", "severity": "high"}'
#: short enough for the tests to be quick, long enough for a loaded machine to answer
CALL_TIMEOUT = 1.0
STORE_DOWN = {"error": "token store unavailable"}


@dataclasses.dataclass
class Outage:
    daemon: RunningDaemon
    relay: Relay
    db: PgDatabase


@pytest_twisted.async_yield_fixture
async def outage(reactor: Any, tmp_path: Path, pg_database: PgDatabase) -> AsyncIterator[Outage]:
    """
    The daemon on PostgreSQL through a relay, with short timeouts: a call waits 1 s, a connection
    2 s, and the LISTEN link is checked after 1 s of quiet.
    """
    relay = Relay(int(parse_dsn(pg_database.dsn).get("port", 5432)))
    relay.reopen()
    database = DatabaseSettings(dsn=make_dsn(pg_database.dsn, host="127.0.0.1", port=relay.port),
                                call_timeout=CALL_TIMEOUT, connect_timeout=2, listen_check_interval=1.0)
    running = await start_daemon(reactor, daemon_settings(tmp_path / "state", database=database))
    try:
        yield Outage(running, relay, pg_database)
    finally:
        # a daemon stopping while its database is silent must not hang (its pool threads are freed)
        safety = threading.Timer(30, relay.cut)
        safety.start()
        started = time.monotonic()
        await running.stop()
        safety.cancel()
        relay.cut()
        assert time.monotonic() - started < 30, "stopping hung on the silent database"


async def post(running: RunningDaemon, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    """
    One request that gives up after 30 s (a hang fails the test rather than blocking it).
    """
    response = await running.http.request("POST", running.base_url + path, data=BODY, timeout=30,
                                          headers={k: [v] for k, v in (headers or {}).items()})
    return response.code, json.loads(await response.content()), response


async def eventually(reactor: Any, check: Callable[[], Awaitable[bool]], seconds: float = 20.0) -> float:
    """
    Seconds until C{check()} held (polling every 0.2 s); fails after C{seconds}.
    """
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < seconds, f"still not so after {seconds} s"
        await deferLater(reactor, 0.2, lambda: None)
    return time.monotonic() - started


def sample(metrics: str, name: str) -> float:
    """The value of one sample line (name with labels as Prometheus writes them), 0 when absent."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith(name + " "))


async def status_page(running: RunningDaemon) -> str:
    response = await treq.get(f"{running.admin_url}/status", headers={"Authorization": [f"Bearer {running.admin_key}"]})
    return (await response.content()).decode("utf-8")


# -- refused -------------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_refused_store_is_503_for_uncached_tokens_on_every_route_while_cached_ones_flow(
        reactor: Any, outage: Outage) -> None:
    """PostgreSQL refusing connections: a cached token is still accepted; an uncached or unknown token
    is 503 token store unavailable with Retry-After on the webhook and email routes and Splunk's
    'Server is busy' (code 9) on HEC — never 500; /metrics and the status page say the store is down,
    and once it is back the uncached token is accepted. A cached token with an explicit idempotency key
    is 503 too (the key cannot be claimed), counted under its template, while a vendor's delivery id
    (PagerDuty's X-Webhook-Id) is published without de-duplication and counted as such; /readyz stays 200."""
    d = outage.daemon
    cached, uncached, vendor = await d.mint("acme"), await d.mint("acme"), await d.mint("acme", "pagerduty")
    for token in (cached, vendor):
        assert (await post(d, f"/v1/inbox/{token}"))[0] == 200
    outage.relay.cut()

    assert (await post(d, f"/v1/inbox/{cached}"))[:2] == (200, {"accepted": 1, "template": "generic-json"})
    assert (await treq.get(d.base_url + "/readyz")).code == 200  # cached traffic flows: still ready
    status, reply, response = await post(d, f"/v1/inbox/{cached}", {"X-AiSOC-Idempotency-Key": "k1"})
    assert (status, reply) == (503, STORE_DOWN)  # the key cannot be claimed: nothing published
    status, reply, _ = await post(d, f"/v1/inbox/{vendor}", {"X-Webhook-Id": "delivery-1"})
    assert (status, reply) == (200, {"accepted": 1, "template": "pagerduty"})
    for path in (f"/v1/inbox/{uncached}", f"/v1/inbox/{mint_token()}", f"/v1/inbox/email/{uncached}"):
        status, reply, response = await post(d, path)
        assert (status, reply) == (503, STORE_DOWN), path
        assert response.headers.getRawHeaders("Retry-After") == ["5"]
    status, reply, response = await post(d, "/services/collector/event", {"Authorization": f"Splunk {uncached}"})
    assert (status, reply) == (503, {"text": "Server is busy", "code": 9})
    assert response.headers.getRawHeaders("Retry-After") == ["5"]

    metrics = await d.metrics()
    assert sample(metrics, 'aisoc_ingest_token_store_errors_total{reason="connection"}') >= 5
    assert sample(metrics, "aisoc_ingest_token_store_up") == 0
    assert sample(metrics, 'aisoc_ingest_inbox_requests_total{outcome="store_unavailable",route="webhook",'
                           'template="none"}') == 2
    assert sample(metrics, 'aisoc_ingest_inbox_requests_total{outcome="store_unavailable",route="webhook",'
                           'template="generic-json"}') == 1
    assert sample(metrics, 'aisoc_ingest_idempotency_skipped_total{reason="store_unavailable"}') == 1
    assert 'outcome="error"' not in metrics
    assert "token store down for" in await status_page(d)

    outage.relay.reopen()
    await eventually(reactor, lambda: _accepted(d, uncached))
    assert sample(await d.metrics(), "aisoc_ingest_token_store_up") == 1
    assert "answering" in await status_page(d)


@pytest_twisted.ensureDeferred
async def test_a_claim_committed_after_its_call_timed_out_does_not_refuse_the_retry(
        reactor: Any, outage: Outage) -> None:
    """The server takes longer to commit an idempotency claim than the call timeout (a deferred trigger
    sleeps at COMMIT): the request gets 503 and publishes nothing, but the claim is committed on the
    server after all. The sender's retry with the same key is accepted — not refused with 409 for the
    claim's 120 s lease — and published once."""
    d = outage.daemon
    pg_query(outage.db.admin_dsn, _SLOW_COMMIT)
    pg_query(outage.db.admin_dsn, "INSERT INTO slow_commits VALUES ('retry-me')")
    token = await d.mint("acme")
    assert (await post(d, f"/v1/inbox/{token}"))[0] == 200  # cached
    headers = {"X-AiSOC-Idempotency-Key": "retry-me"}
    assert (await post(d, f"/v1/inbox/{token}", headers))[:2] == (503, STORE_DOWN)

    async def committed() -> bool:
        rows, _ = pg_query(outage.db.admin_dsn, "SELECT count(*) FROM inbox_idempotency_keys WHERE key = 'retry-me'")
        return bool(rows[0][0])

    await eventually(reactor, committed)
    status, reply, _ = await post(d, f"/v1/inbox/{token}", headers)
    assert (status, reply) == (200, {"accepted": 1, "template": "generic-json"})
    assert len(d.events()) == 2


#: at COMMIT, a claim of a key listed in slow_commits takes 2 s (once per listing)
_SLOW_COMMIT = """
CREATE TABLE slow_commits (key text PRIMARY KEY);
CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    DELETE FROM slow_commits WHERE key = NEW.key;
    IF FOUND THEN
        PERFORM pg_sleep(2);
    END IF;
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON inbox_idempotency_keys
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit();
"""


async def _accepted(d: RunningDaemon, token: str) -> bool:
    return (await post(d, f"/v1/inbox/{token}"))[0] == 200


# -- silent for everyone ---------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_stalled_store_is_answered_503_within_the_call_timeout(reactor: Any, outage: Outage) -> None:
    """PostgreSQL behind a link that holds every byte silently: an uncached or unknown token gets its
    503 after about database.call_timeout instead of hanging as long as the stall lasts, a cached
    token is accepted meanwhile, and after the stall the uncached token is accepted."""
    d = outage.daemon
    cached, uncached = await d.mint("acme"), await d.mint("acme")
    assert (await post(d, f"/v1/inbox/{cached}"))[0] == 200
    outage.relay.stall()
    try:
        for token in (uncached, mint_token()):
            started = time.monotonic()
            status, reply, response = await post(d, f"/v1/inbox/{token}")
            assert (status, reply) == (503, STORE_DOWN)
            assert response.headers.getRawHeaders("Retry-After") == ["5"]
            assert time.monotonic() - started < 10 * CALL_TIMEOUT  # loose: the stall itself is endless
        assert (await post(d, f"/v1/inbox/{cached}"))[0] == 200
        assert sample(await d.metrics(), 'aisoc_ingest_token_store_errors_total{reason="timeout"}') >= 1
    finally:
        outage.relay.resume()
    await eventually(reactor, lambda: _accepted(d, uncached))


# -- silent on the open connections (LISTEN among them) -------------------------------------------

@pytest_twisted.ensureDeferred
async def test_revocation_after_a_silent_link_reaches_the_daemon_well_before_the_ttl(
        reactor: Any, outage: Outage) -> None:
    """The connections open to PostgreSQL go silent for good (a firewall forgot them; new connections
    pass), then the token is revoked in the database: the LISTEN link's check finds it dead, the
    daemon reconnects and drops its cache, so the revoked token is refused within seconds instead of
    being accepted from the cache for its 60 s TTL."""
    d = outage.daemon
    token = await d.mint("acme")
    assert (await post(d, f"/v1/inbox/{token}"))[0] == 200  # cached for 60 s
    outage.relay.forget()
    pg_query(outage.db.admin_dsn, "UPDATE tenant_inbox_tokens SET revoked_at = now() WHERE fingerprint = %s",
             (fingerprint(token),))

    async def refused() -> bool:
        status, reply, _ = await post(d, f"/v1/inbox/{token}")
        assert status in (200, 401, 503), (status, reply)  # 503 while a silent pool connection is given up
        return status == 401

    await eventually(reactor, refused, seconds=30)  # from the cache, the TTL would take 60 s
    assert "listening" in await status_page(d)


# -- the libpq settings ----------------------------------------------------------------------------

def test_connections_carry_keepalives_user_timeout_and_statement_timeout(pg_database: PgDatabase) -> None:
    """A connection opened with the store's parameters has TCP keepalives and the user timeout on
    its socket and the statement timeout in its session; a key the DSN sets itself wins."""
    settings = DatabaseSettings(statement_timeout=7.5, keepalives_idle=11, keepalives_interval=4,
                                keepalives_count=2, tcp_user_timeout=9)
    dsn = make_dsn(pg_database.dsn, host="127.0.0.1", keepalives_count="6")
    connection = psycopg2.connect(dsn, **connection_parameters(settings, parse_dsn(dsn)))
    try:
        with socket.socket(fileno=connection.fileno()) as s:
            try:
                options = [s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)] + [
                    s.getsockopt(socket.IPPROTO_TCP, option) for option in
                    (socket.TCP_KEEPIDLE, socket.TCP_KEEPINTVL, socket.TCP_KEEPCNT, socket.TCP_USER_TIMEOUT)]
            finally:
                s.detach()
        assert options == [1, 11, 4, 6, 9000]
        with connection.cursor() as cursor:
            cursor.execute("SHOW statement_timeout")
            assert cursor.fetchone() == ("7500ms",)
    finally:
        connection.close()


@pytest_twisted.ensureDeferred
async def test_a_statement_the_server_holds_too_long_is_cancelled(reactor: Any, pg_database: PgDatabase) -> None:
    """A lookup blocked in the server (a table locked by someone else) is cancelled after
    statement_timeout: a StoreError with reason statement_timeout, long before the call timeout."""
    from cryptography.fernet import Fernet

    store = PostgresStore(pg_database.dsn, SecretBox(Fernet.generate_key()), reactor,
                          DatabaseSettings(statement_timeout=0.3, call_timeout=20))
    store.startService()
    locker = psycopg2.connect(pg_database.admin_dsn)
    try:
        await store.upgrade()
        locker.cursor().execute("LOCK TABLE tenant_inbox_tokens IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        with pytest.raises(StoreError) as raised:
            await store.resolve(fingerprint(mint_token()))
        assert raised.value.reason == "statement_timeout"
        assert time.monotonic() - started < 10
    finally:
        locker.rollback()
        locker.close()
        await defer.maybeDeferred(store.stopService)


# -- a flood of random tokens ----------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_a_random_token_flood_reaches_postgres_at_the_budgeted_rate(reactor: Any, tmp_path: Path,
                                                                         pg_database: PgDatabase) -> None:
    """400 distinct random tokens from one address, 20 at a time, with 5 unknown-token lookups a second
    allowed: PostgreSQL itself counts no more resolve calls than the budget allows over the flood (the
    rest are 429 with Retry-After, the store untouched), the lookups metric agrees with it, and 20
    valid tokens cached before the flood are still served from the cache after it."""
    pg_query(pg_database.admin_dsn, f"ALTER DATABASE {pg_database.name} SET track_functions = 'all'")
    settings = daemon_settings(tmp_path / "state", database=DatabaseSettings(dsn=pg_database.dsn),
                               token_cache=TokenCacheSettings(unknown_lookups_per_ip_per_sec=5))
    d = await start_daemon(reactor, settings)
    try:
        valid = [await d.mint("acme") for _ in range(20)]
        for token in valid:
            assert (await post(d, f"/v1/inbox/{token}"))[0] == 200
        lookups_before = sample(await d.metrics(), "aisoc_ingest_token_store_lookups_total")

        gate = defer.DeferredSemaphore(20)
        started = time.monotonic()
        replies = await defer.gatherResults(
            [gate.run(lambda: defer.Deferred.fromCoroutine(post(d, f"/v1/inbox/{mint_token()}")))
             for _ in range(400)])
        elapsed = time.monotonic() - started

        metrics = await d.metrics()
        lookups = sample(metrics, "aisoc_ingest_token_store_lookups_total") - lookups_before
        statuses = [status for status, _, _ in replies]
        assert set(statuses) <= {401, 429}
        assert statuses.count(401) == lookups
        assert lookups <= 5 * elapsed + 5
        assert statuses.count(429) == sample(metrics, "aisoc_ingest_token_unknown_lookups_refused_total")
        assert all(r.headers.getRawHeaders("Retry-After") == ["1"] for s, _, r in replies if s == 429)

        for token in valid:
            assert (await post(d, f"/v1/inbox/{token}"))[0] == 200
        total = sample(await d.metrics(), "aisoc_ingest_token_store_lookups_total")
        assert total == lookups_before + lookups
    finally:
        await d.stop()

    async def counted_by_postgres() -> bool:  # backends flush their statistics as they exit
        rows, _ = pg_query(pg_database.admin_dsn, "SELECT coalesce(sum(calls), 0) FROM pg_stat_user_functions "
                                                  "WHERE funcname = 'aisoc_inbox_resolve_token'")
        return int(rows[0][0]) == total

    await eventually(reactor, counted_by_postgres, seconds=15)


# -- what an outage logs ---------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_an_outage_logs_a_few_clear_lines_and_no_traceback(reactor: Any, pg_database: PgDatabase) -> None:
    """The connections open to PostgreSQL are cut, new ones refused, then the link stalls and comes back:
    the log says the store is down (once), that a silent connection was shut, and that it answers again —
    not adbapi's two 'Rollback failed' tracebacks for every lost connection."""
    from cryptography.fernet import Fernet

    relay = Relay(int(parse_dsn(pg_database.dsn).get("port", 5432)))
    relay.reopen()
    settings = DatabaseSettings(call_timeout=CALL_TIMEOUT, connect_timeout=2)
    store = PostgresStore(make_dsn(pg_database.dsn, host="127.0.0.1", port=relay.port),
                          SecretBox(Fernet.generate_key()), reactor, settings)
    store.startService()
    unknown = fingerprint(mint_token())
    try:
        await store.upgrade()
        with capturedLogs() as events:
            await defer.gatherResults([store.resolve(unknown) for _ in range(3)])  # several pool connections
            relay.cut()
            for _ in range(4):
                with pytest.raises(StoreError):
                    await store.resolve(unknown)
            relay.reopen()
            await eventually(reactor, lambda: _answers(store, unknown))
            relay.stall()
            with pytest.raises(StoreError):
                await store.resolve(unknown)
            relay.resume()
            await eventually(reactor, lambda: _answers(store, unknown))
    finally:
        await defer.maybeDeferred(store.stopService)
        relay.cut()
    assert [formatEvent(e) for e in events if "log_failure" in e or e.get("isError")] == []
    lines = _store_lines(events)
    shut = [line for line in lines if "shut a connection that left a statement unanswered" in line]
    assert len(shut) <= 1, lines  # the stalled call's connection, when it was open already
    assert [line.split(" (")[0].split(" after ")[0] for line in lines if line not in shut] == [
        "token store unavailable", "token store answers again",
        "token store unavailable", "token store answers again"], lines


def _store_lines(events: list[dict[str, Any]]) -> list[str]:
    """The store's own lines at info and above: not the lines of HTTP connections an earlier test left
    to time out in the same reactor."""
    return [formatEvent(e) for e in events
            if e["log_level"] >= LogLevel.info
            and e.get("log_namespace", "").startswith(("aisoc_inboxd.store", "twisted.enterprise"))]


async def _answers(store: PostgresStore, fp: str) -> bool:
    try:
        await store.resolve(fp)
    except StoreError:
        return False
    return True


@pytest_twisted.ensureDeferred
async def test_a_listen_link_that_keeps_failing_logs_when_it_fails_and_when_it_is_back(
        reactor: Any, pg_database: PgDatabase) -> None:
    """The LISTEN link cannot be opened four times in a row, then opens: one line when it fails, one
    when it is open again (and the cache is dropped then), not one line per retry."""
    attempts: list[int] = []
    opened: defer.Deferred[None] = defer.Deferred()

    def connect() -> Any:
        attempts.append(1)
        if len(attempts) <= 4:
            raise psycopg2.OperationalError("connection to server at \"db\" failed: Connection refused\n")
        return psycopg2.connect(pg_database.dsn, async_=True)

    def invalidated(fp: str | None) -> None:
        if fp is None and not opened.called:
            opened.callback(None)

    listener = PostgresInvalidationListener(connect, invalidated, reactor, check_interval=10, answer_within=5,
                                            max_backoff=0.05)
    with capturedLogs() as events:
        listener.startService()
        try:
            await opened.addTimeout(20, reactor)
        finally:
            await listener.stopService()
    lines = _store_lines(events)
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"LISTEN {CHANNEL} failed (connection to server at \"db\" failed: Connection refused)")
    assert lines[1].startswith(f"LISTEN {CHANNEL} open again after") and lines[1].endswith("(4 attempts failed)")


# -- the CLI ---------------------------------------------------------------------------------------

def test_the_cli_says_in_one_line_that_the_database_does_not_answer(tmp_path: Path, pg_database: PgDatabase) -> None:
    """`token list` against a PostgreSQL that refuses connections, then against one that accepts them but
    does not answer (the table is locked by someone else): one line on stderr naming the problem, exit
    status 1, no traceback."""
    relay = Relay(int(parse_dsn(pg_database.dsn).get("port", 5432)))
    (tmp_path / "state").mkdir()
    config = tmp_path / "inboxd.yaml"
    config.write_text(json.dumps({"state_dir": str(tmp_path / "state"), "database": {
        "dsn": make_dsn(pg_database.dsn, host="127.0.0.1", port=relay.port), "call_timeout": CALL_TIMEOUT}}))

    def token_list() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "aisoc_inboxd.cli", "--config", str(config), "token", "list",
                               "--tenant", "acme"], capture_output=True, text=True, timeout=60)

    refused = token_list()
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr.startswith("aisoc-inboxd: PostgreSQL is unreachable (host=127.0.0.1") and \
        refused.stderr.count("\n") == 1, refused.stderr

    relay.reopen()
    try:
        assert token_list().returncode == 0  # creates the schema
        locker = psycopg2.connect(pg_database.admin_dsn)
        try:
            locker.cursor().execute("LOCK TABLE tenant_inbox_tokens IN ACCESS EXCLUSIVE MODE")
            silent = token_list()
        finally:
            locker.close()
    finally:
        relay.cut()
    assert (silent.returncode, silent.stdout) == (1, "")
    assert silent.stderr == (f"aisoc-inboxd: the token store is unavailable: PostgreSQL at 127.0.0.1:{relay.port}/"
                             f"{pg_database.name} as {pg_database.name}: no answer within 1 s\n")
