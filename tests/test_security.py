"""
Attacks on the daemon: tokens, signatures, idempotency replays, the rate limit, oversized and
endless bodies, zip bombs, content types, and what reaches logs and metrics. Each asserts the exact
status, the JSON error, the metric outcome, and that nothing was published. Replies are tested in
memory (L{aisoc_inboxd.testing}); what needs real sockets, a real store or the admin listener (raw
request heads, memory under an endless body, concurrent replays, cache invalidation) runs against
the real daemon.
"""
from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import resource
import socket
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
import pytest_twisted
from twisted.internet import defer, threads
from twisted.logger import formatEvent, globalLogPublisher

from aisoc_inboxd.config import HttpSettings
from aisoc_inboxd.testing import FakeStore, MemoryInbox
from tests.support.daemon import RunningDaemon, daemon_settings, start_daemon

BODY = b'{"id": "a1", "title": "Impossible travel", "severity": "high"}'
SECRET = b"whsec_test_0123456789"


def sign(body: bytes, secret: bytes = SECRET) -> str:
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def outcome_count(metrics: str, route: str, template: str, outcome: str) -> float:
    needle = f'aisoc_ingest_inbox_requests_total{{outcome="{outcome}",route="{route}",template="{template}"}} '
    return sum(float(line[len(needle):]) for line in metrics.splitlines() if line.startswith(needle))


@pytest.fixture
def inboxd() -> MemoryInbox:
    return MemoryInbox(FakeStore(), http_settings=HttpSettings(max_body_bytes=256 * 1024, rate_limit_per_min=60))


@pytest_twisted.async_yield_fixture
async def daemon(reactor: Any, tmp_path: Path) -> AsyncIterator[RunningDaemon]:
    settings = daemon_settings(tmp_path / "state", http={"max_body_bytes": 256 * 1024, "rate_limit_per_min": 60})
    running = await start_daemon(reactor, settings)
    yield running
    await running.stop()


# -- signatures ---------------------------------------------------------------------------------

@pytest.mark.parametrize("headers", [
    lambda b: {"X-Signature": sign(b)},
    lambda b: {"X-Signature": "sha256=" + sign(b)},
    lambda b: {"X-Hub-Signature-256": "sha256=" + sign(b)},
    lambda b: {"X-Hub-Signature-256": sign(b).upper()},
    lambda b: {"X-PagerDuty-Signature": f"v1={sign(b, b'old-secret')},v1={sign(b)}"},
])
@pytest_twisted.ensureDeferred
async def test_every_signature_form_is_accepted(inboxd: MemoryInbox, headers: Any) -> None:
    """hex HMAC-SHA256 of the raw body in X-Signature, X-Hub-Signature-256 (sha256= optional) or any
    of PagerDuty's v1= signatures lets a signed token's request through."""
    token = await inboxd.mint(signing_secret=SECRET)
    status, reply, _ = await inboxd.post(f"/v1/inbox/{token}", BODY, headers(BODY))
    assert (status, reply) == (200, {"accepted": 1, "template": "generic-json"})


def flip_bit(signature: str) -> str:
    return signature[:-1] + ("0" if signature[-1] != "0" else "1")


@pytest.mark.parametrize("headers", [
    {},
    {"X-Signature": ""},
    {"X-Signature": flip_bit(sign(BODY))},
    {"X-Signature": sign(BODY + b" ")},
    {"X-Signature": sign(BODY, b"another secret")},
    {"X-Hub-Signature-256": "sha1=" + sign(BODY)},
    {"X-PagerDuty-Signature": "v0=" + sign(BODY)},
    {"X-Signature": "sha256=" + sign(BODY)[:-2]},
    {"X-Signature": "é" * 64},
])
@pytest_twisted.ensureDeferred
async def test_missing_or_wrong_signature_is_401(inboxd: MemoryInbox, headers: dict[str, str]) -> None:
    """A signed token refuses an unsigned, bit-flipped, truncated or foreign-key signature with 401."""
    token = await inboxd.mint(signing_secret=SECRET)
    status, reply, _ = await inboxd.post(f"/v1/inbox/{token}", BODY, headers)
    assert (status, reply) == (401, {"error": "invalid signature"})
    assert inboxd.events() == []
    assert outcome_count(inboxd.metrics_text(), "webhook", "generic-json", "invalid_signature") == 1


@pytest_twisted.ensureDeferred
async def test_signature_covers_the_gzip_bytes_on_the_wire(inboxd: MemoryInbox) -> None:
    """With Content-Encoding: gzip the signature is over the compressed bytes, not the decoded body."""
    token = await inboxd.mint(signing_secret=SECRET)
    wire = gzip.compress(BODY)
    good = await inboxd.post(f"/v1/inbox/{token}", wire, {"Content-Encoding": "gzip", "X-Signature": sign(wire)})
    assert good[:2] == (200, {"accepted": 1, "template": "generic-json"})
    bad = await inboxd.post(f"/v1/inbox/{token}", wire, {"Content-Encoding": "gzip", "X-Signature": sign(BODY)})
    assert bad[:2] == (401, {"error": "invalid signature"})


# -- tokens and scope ---------------------------------------------------------------------------

@pytest.mark.parametrize("path", [
    "/v1/inbox/", "/v1/inbox/aisoc_inbox_", "/v1/inbox/" + "a" * 5000,
    "/v1/inbox/aisoc_inbox_" + "b" * 52 + "/extra", "/v1/inbox/%00",
])
@pytest_twisted.ensureDeferred
async def test_malformed_paths_publish_nothing(inboxd: MemoryInbox, path: str) -> None:
    """Empty, short, huge, nested or binary tokens get a JSON 401/404, never a 2xx."""
    status, reply, _ = await inboxd.post(path, BODY)
    assert status in (401, 404)
    assert "error" in reply
    assert inboxd.events() == []


@pytest_twisted.ensureDeferred
async def test_a_token_writes_only_its_own_tenant(inboxd: MemoryInbox) -> None:
    """Whatever the body claims, events carry the token's tenant and template."""
    token_a = await inboxd.mint("tenant-a", "generic-json")
    token_b = await inboxd.mint("tenant-b", "pagerduty")
    forged = json.dumps({"tenant_uid": "tenant-b", "metadata": {"tenant_uid": "tenant-b"}, "id": "x"}).encode()
    assert (await inboxd.post(f"/v1/inbox/{token_a}", forged))[0] == 200
    assert (await inboxd.post(f"/v1/inbox/{token_b}", BODY))[0] == 200
    first, second = inboxd.events()
    assert (first["metadata"]["tenant_uid"], first["metadata"]["log_name"]) == ("tenant-a", "generic-json")
    assert (second["metadata"]["tenant_uid"], second["metadata"]["log_name"]) == ("tenant-b", "pagerduty")


@pytest_twisted.ensureDeferred
async def test_tokens_appear_in_no_log_line_error_body_or_metric(inboxd: MemoryInbox) -> None:
    """Across good, bad and signed requests no token reaches the log, an error body or /metrics."""
    token = await inboxd.mint(signing_secret=SECRET)
    lines: list[str] = []
    observer = lambda event: lines.append(formatEvent(event) + repr(event))  # noqa: E731
    globalLogPublisher.addObserver(observer)
    try:
        replies = [await inboxd.post(f"/v1/inbox/{token}", BODY, {"X-Signature": sign(BODY)}),
                   await inboxd.post(f"/v1/inbox/{token}", BODY),
                   await inboxd.post(f"/v1/inbox/{token[:-1]}a", BODY),
                   await inboxd.post(f"/v1/inbox/{token}?token={token}", b"{", {"X-Signature": sign(b"{")})]
    finally:
        globalLogPublisher.removeObserver(observer)
    assert [r[0] for r in replies] == [200, 401, 401, 400]
    text = "\n".join(lines) + json.dumps([r[1] for r in replies]) + inboxd.metrics_text()
    assert token not in text and token[:-1] not in text and SECRET.decode() not in text


@pytest_twisted.ensureDeferred
async def test_a_percent_encoded_token_is_redacted_in_the_log(inboxd: MemoryInbox) -> None:
    """The route decodes /v1/inbox/aisoc%5Finbox_…; the access log of its 404 and 405 redacts the
    decoded path, so no spelling of the token reaches the log."""
    token = await inboxd.mint()
    encoded = token.replace("_", "%5F", 1).replace("a", "%61")
    lines: list[str] = []
    observer = lambda event: lines.append(formatEvent(event))  # noqa: E731
    globalLogPublisher.addObserver(observer)
    try:
        accepted = await inboxd.post(f"/v1/inbox/{encoded}", BODY)
        not_found = await inboxd.post(f"/v1/inbox/{encoded}/extra", BODY)
        not_allowed = await inboxd.post(f"/v1/inbox/{encoded}", b"", method="GET")
    finally:
        globalLogPublisher.removeObserver(observer)
    assert [accepted[0], not_found[0], not_allowed[0]] == [200, 404, 405]
    text = "\n".join(lines)
    assert "aisoc_inbox_<redacted>" in text
    assert token[12:] not in text and encoded[15:] not in text


# -- idempotency --------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_replayed_key_publishes_once_and_answers_the_same(inboxd: MemoryInbox) -> None:
    """A repeat of X-AiSOC-Idempotency-Key gets the first reply plus X-AiSOC-Idempotent-Replay."""
    token = await inboxd.mint()
    headers = {"X-AiSOC-Idempotency-Key": "delivery-42"}
    first = await inboxd.post(f"/v1/inbox/{token}", b'{"n": 1}\n{"n": 2}', headers)
    again = await inboxd.post(f"/v1/inbox/{token}", b'{"n": 1}\n{"n": 2}', headers)
    assert first[:2] == again[:2] == (200, {"accepted": 2, "template": "generic-json"})
    assert first[2].headers.getRawHeaders("x-aisoc-idempotent-replay") is None
    assert again[2].headers.getRawHeaders("x-aisoc-idempotent-replay") == ["true"]
    assert len(inboxd.events()) == 2
    assert outcome_count(inboxd.metrics_text(), "webhook", "generic-json", "replay") == 1
    other = await inboxd.post(f"/v1/inbox/{token}", b'{"n": 3}', {"X-AiSOC-Idempotency-Key": "delivery-43"})
    assert other[:2] == (200, {"accepted": 1, "template": "generic-json"})
    assert len(inboxd.events()) == 3


@pytest_twisted.ensureDeferred
async def test_parallel_replays_publish_once(daemon: RunningDaemon) -> None:
    """Twenty concurrent requests with one key publish once; all answer 200 with the same body."""
    token = await daemon.mint()
    headers = {"X-AiSOC-Idempotency-Key": "burst"}
    results = await defer.gatherResults(
        [defer.Deferred.fromCoroutine(daemon.post(f"/v1/inbox/{token}", BODY, headers)) for _ in range(20)])
    assert {(status, json.dumps(body)) for status, body, _ in results} == {
        (200, json.dumps({"accepted": 1, "template": "generic-json"}))}
    assert sum(1 for *_, r in results if r.headers.getRawHeaders("x-aisoc-idempotent-replay")) == 19
    assert len(daemon.events()) == 1


@pytest_twisted.ensureDeferred
async def test_same_key_on_another_token_is_independent(inboxd: MemoryInbox) -> None:
    """Keys are scoped to their token: two tokens using one key both publish."""
    headers = {"X-AiSOC-Idempotency-Key": "shared"}
    for token in (await inboxd.mint("a"), await inboxd.mint("b")):
        assert (await inboxd.post(f"/v1/inbox/{token}", BODY, headers))[:2] == (
            200, {"accepted": 1, "template": "generic-json"})
    assert len(inboxd.events()) == 2


@pytest_twisted.ensureDeferred
async def test_failed_request_does_not_burn_its_key(inboxd: MemoryInbox) -> None:
    """A request refused for its body may be retried, corrected, with the same key."""
    token = await inboxd.mint()
    headers = {"X-AiSOC-Idempotency-Key": "retry-me"}
    assert (await inboxd.post(f"/v1/inbox/{token}", b"{broken", headers))[0] == 400
    assert (await inboxd.post(f"/v1/inbox/{token}", BODY, headers))[:2] == (
        200, {"accepted": 1, "template": "generic-json"})
    assert len(inboxd.events()) == 1


@pytest.mark.parametrize("key", ["k" * 256, " "])
@pytest_twisted.ensureDeferred
async def test_unusable_keys_are_400(inboxd: MemoryInbox, key: str) -> None:
    """A key longer than 255 bytes, or blank, is 400 naming the header."""
    token = await inboxd.mint()
    status, reply, _ = await inboxd.post(f"/v1/inbox/{token}", BODY, {"X-AiSOC-Idempotency-Key": key})
    assert status == 400
    assert "X-AiSOC-Idempotency-Key" in reply["error"]
    assert inboxd.events() == []


# -- rate limit ---------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_thousand_requests_past_the_rate_limit(reactor: Any, inboxd: MemoryInbox) -> None:
    """At 60/min a tenant gets its 60-request burst, then 429 + Retry-After for 1,000 more, with nothing
    published; another tenant is unaffected."""
    token = await inboxd.mint("busy")
    codes: list[int] = []
    retry_after: set[str] = set()

    async def one() -> None:
        status, reply, response = await inboxd.post(f"/v1/inbox/{token}", BODY)
        codes.append(status)
        if status == 429:
            assert reply["error"].startswith("too many requests")
            retry_after.update(response.headers.getRawHeaders("retry-after"))

    started = reactor.seconds()
    for _ in range(53):  # 1,060 requests, 20 at a time
        await defer.gatherResults([defer.Deferred.fromCoroutine(one()) for _ in range(20)])
    refilled = int(reactor.seconds() - started) + 1  # the bucket refills one request per second
    assert 60 <= codes.count(200) <= 60 + refilled
    assert codes.count(429) == 1060 - codes.count(200)
    assert retry_after and all(int(v) >= 1 for v in retry_after)
    assert len(inboxd.events()) == codes.count(200)
    assert outcome_count(inboxd.metrics_text(), "webhook", "generic-json", "rate_limited") == codes.count(429)
    quiet = await inboxd.mint("quiet")
    assert (await inboxd.post(f"/v1/inbox/{quiet}", BODY))[0] == 200


# -- body limits and encodings -----------------------------------------------------------------

def raw_exchange(port: int, head: bytes, body_chunks: Any = (), read_timeout: float = 10) -> tuple[bytes, int]:
    """
    Send a hand-made request (head, then chunks until the server stops reading) and return what
    the server answered plus how many body bytes were sent.
    """
    sent = 0
    with socket.create_connection(("127.0.0.1", port), 5) as s:
        s.sendall(head)
        try:
            for chunk in body_chunks:
                s.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass  # the server closed its side: the refusal is what we came for
        s.settimeout(read_timeout)
        answer = b""
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    break
                answer += data
        except OSError:
            pass
    return answer, sent


@pytest_twisted.ensureDeferred
async def test_declared_length_over_limit_is_413_before_the_body(daemon: RunningDaemon) -> None:
    """Content-Length over the limit is refused at once, without 100 Continue and without the body."""
    token = await daemon.mint()
    port = daemon.daemon.address("http").port
    head = (f"POST /v1/inbox/{token} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {100 * 1024 * 1024}\r\nExpect: 100-continue\r\n\r\n").encode()
    answer, _ = await threads.deferToThread(raw_exchange, port, head)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"100 Continue" not in answer
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"].startswith("body too large")
    assert daemon.events() == []


@pytest_twisted.ensureDeferred
async def test_endless_chunked_body_is_cut_off_with_bounded_memory(daemon: RunningDaemon) -> None:
    """A chunked body streamed towards 100 MiB is answered 413 once past the limit; the daemon's
    memory does not grow with what the sender keeps sending."""
    token = await daemon.mint()
    port = daemon.daemon.address("http").port
    head = (f"POST /v1/inbox/{token} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    chunk = b"%x\r\n%s\r\n" % (1024 * 1024, b"x" * 1024 * 1024)
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    answer, sent = await threads.deferToThread(raw_exchange, port, head, (chunk for _ in range(100)))
    peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert (peak_after - peak_before) * 1024 < 64 * 1024 * 1024, (peak_before, peak_after, sent)
    assert daemon.events() == []
    assert outcome_count(await daemon.metrics(), "webhook", "none", "too_large") == 1


@pytest_twisted.ensureDeferred
async def test_zip_bomb_is_413(inboxd: MemoryInbox) -> None:
    """A 50 MiB gzip bomb in a small body is refused with 413, not inflated."""
    token = await inboxd.mint()
    bomb = gzip.compress(b"{" + b" " * (50 * 1024 * 1024) + b"}")
    assert len(bomb) < 256 * 1024
    status, reply, _ = await inboxd.post(f"/v1/inbox/{token}", bomb, {"Content-Encoding": "gzip"})
    assert status == 413 and reply["error"].startswith("body too large")
    assert inboxd.events() == []


@pytest.mark.parametrize("encoding, body, status, message", [
    ("gzip", b"definitely not gzip", 400, "malformed gzip body"),
    ("gzip", gzip.compress(BODY)[:-6], 400, "malformed gzip body"),
    ("br", BODY, 415, "unsupported Content-Encoding 'br'"),
    ("compress", BODY, 415, "unsupported Content-Encoding"),
])
@pytest_twisted.ensureDeferred
async def test_bad_encodings(inboxd: MemoryInbox, encoding: str, body: bytes, status: int, message: str) -> None:
    """Malformed gzip is 400; an encoding other than gzip is 415; nothing is published."""
    token = await inboxd.mint()
    got_status, reply, _ = await inboxd.post(f"/v1/inbox/{token}", body, {"Content-Encoding": encoding})
    assert got_status == status
    assert reply["error"].startswith(message)
    assert inboxd.events() == []


# -- cache invalidation -------------------------------------------------------------------------

async def resolves(running: RunningDaemon, token: str) -> bool:
    status = (await running.post(f"/v1/inbox/{token}", BODY))[0]
    assert status in (200, 401)
    return status == 200


async def eventually(reactor: Any, check: Any, seconds: float = 10) -> bool:
    """Poll an async check every 0.1 s until it is true or the bound passes."""
    from twisted.internet.task import deferLater

    for _ in range(int(seconds * 10)):
        if await check():
            return True
        await deferLater(reactor, 0.1, lambda: None)
    return False


@pytest_twisted.ensureDeferred
async def test_cli_revocation_reaches_the_running_embedded_daemon(reactor: Any, daemon: RunningDaemon) -> None:
    """Revoking from the CLI (another process, same SQLite file) stops the token within seconds, far
    inside the 60 s TTL, although the daemon had it cached."""
    import os
    import subprocess
    import sys

    token = await daemon.mint("acme")
    assert await resolves(daemon, token)
    env = dict(os.environ, AISOC_INBOX_STATE_DIR=daemon.settings.state_dir)
    done = await threads.deferToThread(
        subprocess.run, [sys.executable, "-m", "aisoc_inboxd.cli", "token", "revoke", "--tenant", "acme", token],
        env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert await eventually(reactor, lambda: _not(resolves(daemon, token)))


async def _not(check: Any) -> bool:
    return not await check


@pytest_twisted.ensureDeferred
async def test_instances_sharing_postgres_learn_rotation_within_a_second(reactor: Any, tmp_path: Path,
                                                                         pg_database: Any) -> None:
    """Two daemons on one PostgreSQL: rotating through instance A's admin API makes instance B refuse
    the old token at once (LISTEN/NOTIFY), and B accepts the new one."""
    from aisoc_inboxd.config import DatabaseSettings

    database = DatabaseSettings(dsn=pg_database.dsn)
    a = await start_daemon(reactor, daemon_settings(tmp_path / "a", database=database))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "secret.key").write_bytes((tmp_path / "a" / "secret.key").read_bytes())
    b = await start_daemon(reactor, daemon_settings(tmp_path / "b", database=database))
    try:
        status, minted = await a.call_admin("POST", "/v1/admin/tenants/acme/tokens", {"template": "generic-json"})
        assert status == 201
        assert await resolves(b, minted["token"])  # now cached in B for 60 s
        status, rotated = await a.call_admin("POST", f"/v1/admin/tenants/acme/tokens/{minted['fingerprint']}/rotate")
        assert status == 200
        assert await eventually(reactor, lambda: _not(resolves(b, minted["token"])), seconds=1.5)
        assert await resolves(b, rotated["token"])
        # the console's Invalidate() hook, sent to A, also reaches B
        assert await resolves(b, rotated["token"])
        await reactor_sql(pg_database.admin_dsn,
                          "UPDATE tenant_inbox_tokens SET revoked_at = now() WHERE fingerprint = %s",
                          rotated["fingerprint"])
        assert await eventually(reactor, lambda: _not(resolves(b, rotated["token"])), seconds=1.5)
    finally:
        await a.stop()
        await b.stop()


async def reactor_sql(dsn: str, statement: str, *params: Any) -> None:
    """Run one statement as another writer would (the console), off the reactor thread."""
    import psycopg2

    def run() -> None:
        with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
            cursor.execute(statement, params)
        connection.close()

    await threads.deferToThread(run)


# -- admin API ----------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_admin_api_requires_its_key(daemon: RunningDaemon) -> None:
    """Without the admin key, or with a wrong one, every admin route is 401."""
    for key in ("", "wrong"):
        status, reply = await daemon.call_admin("GET", "/v1/admin/tenants/acme/tokens", key=key)
        assert status == 401 and reply["error"].startswith("admin API key required")


@pytest_twisted.ensureDeferred
async def test_admin_access_log_times_each_request(daemon: RunningDaemon) -> None:
    """The admin route is built once, at start; each request's duration_ms is its own, within what the
    client waited for the reply, not the time since the daemon started."""
    import time

    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        waited = []
        for _ in range(2):
            began = time.monotonic()
            assert (await daemon.call_admin("GET", "/v1/admin/tenants/acme/tokens"))[0] == 200
            waited.append((time.monotonic() - began) * 1000)
    finally:
        globalLogPublisher.removeObserver(events.append)
    lines = [e for e in events if e.get("route") == "admin"]
    assert len(lines) == 2
    for line, client_ms in zip(lines, waited):
        assert 0 <= line["duration_ms"] <= client_ms + 0.1, (line["duration_ms"], client_ms)


@pytest_twisted.ensureDeferred
async def test_admin_api_refuses_a_bad_tenant_id_naming_the_rule(daemon: RunningDaemon) -> None:
    """Minting for a tenant id outside the rule is 400 naming the id and the rule; nothing is stored."""
    for tenant, in_path in (("-acme", "-acme"), ("a b", "a%20b"), ("x" * 65, "x" * 65)):
        status, reply = await daemon.call_admin("POST", f"/v1/admin/tenants/{in_path}/tokens",
                                                {"template": "pagerduty"})
        assert (status, reply) == (400, {"error": f"invalid tenant id {tenant!r}: a tenant id is 1 to 64 characters "
                                                  f"of A-Z a-z 0-9 . _ -, starting with a letter or a digit"})
        assert (await daemon.call_admin("GET", f"/v1/admin/tenants/{in_path}/tokens")) == (200, {"tokens": []})


@pytest_twisted.ensureDeferred
async def test_admin_api_token_lifecycle_and_tenant_scope(daemon: RunningDaemon) -> None:
    """Mint, list, rotate, revoke through the admin API; another tenant's fingerprint is 404 there."""
    status, minted = await daemon.call_admin("POST", "/v1/admin/tenants/acme/tokens",
                                             {"template": "pagerduty", "label": "prod", "signing_secret": "s"})
    assert status == 201 and minted["template"] == "pagerduty" and minted["path"].endswith(minted["token"])
    status, listing = await daemon.call_admin("GET", "/v1/admin/tenants/acme/tokens")
    assert status == 200
    [row] = listing["tokens"]
    assert (row["fingerprint"], row["label"], row["signed"], row["state"]) == (minted["fingerprint"], "prod", True, "active")
    assert minted["token"] not in json.dumps(listing)
    assert (await daemon.call_admin("POST", f"/v1/admin/tenants/other/tokens/{minted['fingerprint']}/revoke"))[0] == 404
    status, rotated = await daemon.call_admin("POST", f"/v1/admin/tenants/acme/tokens/{minted['fingerprint'][:8]}/rotate")
    assert status == 200 and rotated["token"] != minted["token"]
    assert (await daemon.post(f"/v1/inbox/{minted['token']}", BODY))[0] == 401
    status, revoked = await daemon.call_admin("POST", f"/v1/admin/tenants/acme/tokens/{rotated['fingerprint']}/revoke")
    assert (status, revoked) == (200, {"revoked": rotated["fingerprint"]})
    assert (await daemon.post(f"/v1/inbox/{rotated['token']}", BODY))[0] == 401
    status, reply = await daemon.call_admin("POST", "/v1/admin/tenants/acme/tokens", {"template": "nope"})
    assert status == 400 and "unknown template" in reply["error"]


@pytest_twisted.ensureDeferred
async def test_admin_invalidate_drops_the_cached_token(daemon: RunningDaemon) -> None:
    """POST /v1/admin/invalidate makes the next request re-resolve from the store."""
    token = await daemon.mint()
    assert await resolves(daemon, token)
    assert len(daemon.daemon.token_cache) == 1
    status, reply = await daemon.call_admin("POST", "/v1/admin/invalidate", {"token": token})
    assert status == 200 and reply["invalidated"] == hashlib.sha256(token.encode()).hexdigest()
    assert len(daemon.daemon.token_cache) == 0


@pytest_twisted.ensureDeferred
async def test_vendor_delivery_id_deduplicates_redeliveries(inboxd: MemoryInbox) -> None:
    """A redelivery carrying the same vendor delivery id the template names (PagerDuty X-Webhook-Id)
    is answered as a replay and published once; another id publishes again."""
    token = await inboxd.mint("acme", "pagerduty")
    body = json.dumps({"event": {"id": "01ABC", "event_type": "incident.triggered",
                                 "occurred_at": "2026-05-08T09:00:00Z",
                                 "data": {"id": "Q1", "title": "CPU", "urgency": "high"}}}).encode()
    first = await inboxd.post(f"/v1/inbox/{token}", body, {"X-Webhook-Id": "wh-1"})
    again = await inboxd.post(f"/v1/inbox/{token}", body, {"X-Webhook-Id": "wh-1"})
    assert first[:2] == again[:2] == (200, {"accepted": 1, "template": "pagerduty"})
    assert again[2].headers.getRawHeaders("x-aisoc-idempotent-replay") == ["true"]
    assert len(inboxd.events()) == 1
    assert (await inboxd.post(f"/v1/inbox/{token}", body, {"X-Webhook-Id": "wh-2"}))[0] == 200
    assert len(inboxd.events()) == 2


@pytest.mark.parametrize("path, route", [
    ("/v1/inbox/email/{token}", "email"), ("/services/collector/event", "hec"), ("/v1/inbox/{token}", "webhook")])
@pytest_twisted.ensureDeferred
async def test_refused_declared_length_is_counted_under_its_route(daemon: RunningDaemon, path: str,
                                                                  route: str) -> None:
    """A 413 decided before any route ran is still counted under the route the path names."""
    token = await daemon.mint()
    port = daemon.daemon.address("http").port
    head = (f"POST {path.format(token=token)} HTTP/1.1\r\nHost: x\r\nAuthorization: Splunk {token}\r\n"
            f"Content-Length: {10 * 1024 * 1024}\r\n\r\n").encode()
    answer, _ = await threads.deferToThread(raw_exchange, port, head)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert outcome_count(await daemon.metrics(), route, "none", "too_large") == 1
