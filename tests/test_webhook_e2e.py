"""
POST /v1/inbox/{tenant_token} against the real daemon over real sockets (HTTP and verified TLS):
replies, errors, metrics, durability in the event log, and valid OCSF out.
"""
from __future__ import annotations

import dataclasses
import gzip
import json
import re
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
import pytest_twisted
from twisted.logger import globalLogPublisher

from aisoc_inboxd.config import CefSettings, TemplateSettings, TokenCacheSettings
from aisoc_inboxd.normalizer import validate_event
from aisoc_inboxd.store import TokenRecord
from aisoc_inboxd.tokens import fingerprint, mint_token
from tests.support.daemon import RunningDaemon, daemon_settings, start_daemon
from tests.support.filesystem import FailingDisk, in_directory
from tests.support.ocsf import assert_valid_ocsf
from tests.support.shared import PROJECT
from tests.support.tls import make_tls_files

SPEC_EXAMPLE = {
    "event": {
        "event_type": "incident.triggered",
        "occurred_at": "2026-05-08T09:00:00Z",
        "data": {"id": "Q1234ABCD", "title": "Database CPU > 90%", "urgency": "high",
                 "service": {"summary": "prod-postgres"}},
    }
}


@pytest_twisted.async_yield_fixture
async def inboxd(reactor: Any, tmp_path: Path) -> AsyncIterator[RunningDaemon]:
    settings = daemon_settings(tmp_path / "state", http={"max_body_bytes": 64 * 1024})
    running = await start_daemon(reactor, settings)
    yield running
    await running.stop()


@pytest_twisted.async_yield_fixture
async def inboxd_tls(reactor: Any, tmp_path: Path) -> AsyncIterator[RunningDaemon]:
    tls = make_tls_files(tmp_path / "tls")
    running = await start_daemon(reactor, daemon_settings(tmp_path / "state", tls=tls), tls)
    yield running
    await running.stop()


def outcome_count(metrics: str, route: str, template: str, outcome: str) -> float:
    needle = (f'aisoc_ingest_inbox_requests_total{{outcome="{outcome}",route="{route}",'
              f'template="{template}"}} ')
    for line in metrics.splitlines():
        if line.startswith(needle):
            return float(line[len(needle):])
    return 0.0


@pytest_twisted.ensureDeferred
async def test_spec_example_is_accepted_durable_and_valid_ocsf(inboxd: RunningDaemon) -> None:
    """The spec's curl example answers exactly 200 {"accepted": 1, "template": "pagerduty"} and its
    OCSF event is in the log, valid, with title, uid, severity and time from the payload."""
    token = await inboxd.mint("tenant-a", "pagerduty")
    status, body, response = await inboxd.post(f"/v1/inbox/{token}", json.dumps(SPEC_EXAMPLE).encode(),
                                               {"Content-Type": "application/json"})
    assert (status, body) == (200, {"accepted": 1, "template": "pagerduty"})
    assert response.headers.getRawHeaders("content-type") == ["application/json"]
    [event] = inboxd.events()
    assert_valid_ocsf(event)
    assert event["metadata"]["tenant_uid"] == "tenant-a"
    assert event["severity_id"] == 4
    assert event["time"] == 1778230800000
    assert "Database CPU > 90%" in json.dumps(event)
    assert "Q1234ABCD" in json.dumps(event)
    metrics = await inboxd.metrics()
    assert outcome_count(metrics, "webhook", "pagerduty", "ok") == 1
    assert 'aisoc_ingest_inbox_events_total{template="pagerduty"} 1.0' in metrics
    assert "aisoc_ingest_inbox_token_cache_size 1.0" in metrics


@pytest_twisted.ensureDeferred
async def test_ndjson_batch_is_one_event_per_line(inboxd: RunningDaemon) -> None:
    """An NDJSON body publishes one event per line, in order, and counts them all."""
    token = await inboxd.mint()
    lines = [json.dumps({"id": f"a{i}", "title": f"alert {i}", "severity": "high"}) for i in range(25)]
    status, body, _ = await inboxd.post(f"/v1/inbox/{token}", "\n".join(lines).encode(),
                                        {"Content-Type": "application/x-ndjson"})
    assert (status, body) == (200, {"accepted": 25, "template": "generic-json"})
    events = inboxd.events()
    assert len(events) == 25
    for i, event in enumerate(events):
        assert_valid_ocsf(event)
        assert f"alert {i}" in json.dumps(event)
        assert json.loads(event["raw_data"]) == json.loads(lines[i])


@pytest.mark.parametrize("content_type, body", [
    ("text/plain; charset=UTF-8", b'{"Type": "Notification", "Message": "hello"}'),
    (None, b'{"a": 1}'),
    ("application/vnd.vendor+json", b'{"a": 1}'),
    ("application/x-www-form-urlencoded", b"payload=%7B%22action%22%3A%22published%22%7D"),
])
@pytest_twisted.ensureDeferred
async def test_sloppy_content_types_are_read_by_content(inboxd: RunningDaemon, content_type: str | None,
                                                        body: bytes) -> None:
    """text/plain (AWS SNS), a missing type, +json types and GitHub's form payload= are all JSON."""
    token = await inboxd.mint()
    headers = {"Content-Type": content_type} if content_type else {}
    status, reply, _ = await inboxd.post(f"/v1/inbox/{token}", body, headers)
    assert (status, reply) == (200, {"accepted": 1, "template": "generic-json"})
    assert len(inboxd.events()) == 1


@pytest_twisted.ensureDeferred
async def test_gzip_body_is_decoded(inboxd: RunningDaemon) -> None:
    """Content-Encoding: gzip bodies are accepted."""
    token = await inboxd.mint()
    body = gzip.compress(b'{"n": 1}\n{"n": 2}\n')
    status, reply, _ = await inboxd.post(f"/v1/inbox/{token}", body, {"Content-Encoding": "gzip"})
    assert (status, reply) == (200, {"accepted": 2, "template": "generic-json"})


@pytest_twisted.ensureDeferred
async def test_gzip_without_content_encoding_is_inflated_on_every_route(reactor: Any, tmp_path: Path) -> None:
    """A gzip body sent without Content-Encoding (curl --data-binary @batch.gz, Cloudflare-like
    batchers behind proxies that drop the header) is recognised by its magic bytes and inflated on the
    webhook, e-mail, CEF and HEC routes, with the same decoded-size limit: a bomb is 413."""
    settings = daemon_settings(tmp_path / "state", http={"max_body_bytes": 64 * 1024},
                               cef=CefSettings(tenant="acme"))
    running = await start_daemon(reactor, settings)
    try:
        webhook = await running.mint("acme", "generic-json")
        email = await running.mint("acme", "email-forwarded")
        hec = {"Authorization": f"Splunk {await running.mint('acme', 'splunk-hec')}"}
        cef = b"CEF:0|Vendor|Product|1.0|100|User login failed|3|src=10.0.0.1 suser=alice\n"
        cases = [
            (f"/v1/inbox/{webhook}", b'{"n": 1}\n{"n": 2}\n', {}, {"accepted": 2, "template": "generic-json"}),
            (f"/v1/inbox/email/{email}", b'{"from": "a@example.com", "to": "b@example.com", "subject": "Alert"}',
             {"Content-Type": "application/json"}, {"accepted": 1, "template": "email-forwarded"}),
            ("/v1/inbox/cef", cef * 2, {}, {"accepted": 2, "malformed": 0, "template": "cef-syslog"}),
            ("/services/collector/event", b'{"event": "one"}{"event": "two"}', hec, {"text": "Success", "code": 0}),
            ("/services/collector/raw", b"line one\nline two\n", hec, {"text": "Success", "code": 0}),
        ]
        for path, body, headers, expected in cases:
            status, reply, _ = await running.post(path, gzip.compress(body), headers)
            assert (status, reply) == (200, expected), path
        assert len(running.events()) == 9
        bomb = gzip.compress(b"{}" * (1024 * 1024))
        for path, headers in [(f"/v1/inbox/{webhook}", {}), ("/v1/inbox/cef", {}), ("/services/collector/raw", hec)]:
            status, reply, _ = await running.post(path, bomb, headers)
            assert status == 413, (path, reply)
        status, reply, _ = await running.post(f"/v1/inbox/{webhook}", b"\x1f\x8bnot really gzip")
        assert (status, reply["error"].startswith("malformed gzip body: ")) == (400, True)
        assert len(running.events()) == 9
    finally:
        await running.stop()


@pytest.mark.parametrize("token", [
    "aisoc_inbox_" + "a" * 52,         # well-formed, never minted
    "aisoc_inbox_short",
    "not-a-token",
    "aisoc_inbox_" + "A" * 52,
])
@pytest_twisted.ensureDeferred
async def test_unknown_token_is_401_and_publishes_nothing(inboxd: RunningDaemon, token: str) -> None:
    """A token that does not resolve gets 401 invalid token, counted as invalid_token."""
    status, body, _ = await inboxd.post(f"/v1/inbox/{token}", b'{"a": 1}')
    assert (status, body) == (401, {"error": "invalid token"})
    assert inboxd.events() == []
    assert outcome_count(await inboxd.metrics(), "webhook", "none", "invalid_token") == 1


@pytest_twisted.ensureDeferred
async def test_revoked_and_rotated_tokens_stop_resolving(inboxd: RunningDaemon) -> None:
    """After revoke or rotate (which invalidate the cache) the old token is 401 at once; the new one works."""
    token = await inboxd.mint()
    assert (await inboxd.post(f"/v1/inbox/{token}", b'{"a": 1}'))[0] == 200
    rotated = await inboxd.admin.rotate("tenant-a", token)
    assert (await inboxd.post(f"/v1/inbox/{token}", b'{"a": 1}'))[0] == 401
    assert (await inboxd.post(f"/v1/inbox/{rotated.token}", b'{"a": 1}'))[0] == 200
    await inboxd.admin.revoke("tenant-a", rotated.record.fingerprint[:12])
    assert (await inboxd.post(f"/v1/inbox/{rotated.token}", b'{"a": 1}'))[0] == 401
    assert len(inboxd.events()) == 2


@pytest_twisted.ensureDeferred
async def test_template_no_longer_allowed_is_400_unknown_template(reactor: Any, tmp_path: Path) -> None:
    """A token whose template left the allowed list gets 400 unknown template."""
    settings = daemon_settings(tmp_path / "state", templates=TemplateSettings(allowed=["generic-json"]))
    running = await start_daemon(reactor, settings)
    try:
        from aisoc_inboxd.tokens import fingerprint, mint_token

        token = mint_token()
        await running.daemon.store.insert_token(TokenRecord(fingerprint(token), "tenant-a", "pagerduty",
                                                            created_at=1.0))
        status, body, _ = await running.post(f"/v1/inbox/{token}", b'{"a": 1}')
        assert status == 400
        assert body["error"].startswith("unknown template: 'pagerduty'")
        assert outcome_count(await running.metrics(), "webhook", "pagerduty", "unknown_template") == 1
        assert running.events() == []
    finally:
        await running.stop()


@pytest.mark.parametrize("body, message", [
    (b'{"a": 1}\n{"b": \n', "bad body: invalid JSON at line 2 column 6"),
    (b"", "bad body: empty body"),
    (b"[1]", "bad body: array item 0: expected a JSON object"),
])
@pytest_twisted.ensureDeferred
async def test_bad_json_is_400_saying_which_line(inboxd: RunningDaemon, body: bytes, message: str) -> None:
    """A body that is not JSON records is 400 with the line, and nothing of it is published."""
    token = await inboxd.mint()
    status, reply, _ = await inboxd.post(f"/v1/inbox/{token}", body)
    assert status == 400
    assert reply["error"].startswith(message), reply
    assert inboxd.events() == []
    assert outcome_count(await inboxd.metrics(), "webhook", "generic-json", "bad_request") == 1


def readme_errors_table() -> list[tuple[int, str, list[re.Pattern[str]]]]:
    """
    The README's "Errors" table (the first of the section: the HTTP channel's own refusals, which
    never reach a route, follow in a table of their own and are pinned by test_http_limits): each
    row's status, outcome and the error bodies it documents (the code spans before any "(+ header)"
    note), as patterns: C{…} is any text, C{N} and C{C} numbers, C{'X'} a quoted name.
    """
    section = (PROJECT / "README.md").read_text().split("\n## Errors\n", 1)[1].split("\n## ", 1)[0]
    placeholders = {"…": ".*", "'X'": "'[^']+'", "N": r"\d+", "C": r"\d+"}
    rows = []
    for line in section.split("\n|", 1)[1].split("\n\n", 1)[0].splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[0].isdigit():
            continue
        documented = re.findall(r"`([^`]+)`", cells[1].split("(+")[0])
        patterns = [re.compile("".join(placeholders.get(part, re.escape(part))
                                       for part in re.split(r"(…|'X'|\bN\b|\bC\b)", text)))
                    for text in documented]
        rows.append((int(cells[0]), cells[2].strip("`"), patterns))
    return rows


#: rows another test produces, each where its setup lives: an unwritable sink
#: (test_unwritable_log_is_503_with_retry_after), a store that does not answer (test_store_outages), a bug
ERRORS_PINNED_ELSEWHERE = {(503, "unavailable"), (503, "store_unavailable"), (500, "error")}


@pytest_twisted.ensureDeferred
async def test_every_errors_table_row_is_what_the_daemon_sends(reactor: Any, tmp_path: Path) -> None:
    """Each row of the README's Errors table is produced and the reply's error matches the row's words
    exactly (placeholders aside); every documented alternative is seen, and no reply is undocumented."""
    settings = daemon_settings(tmp_path / "state", http={"max_body_bytes": 8192, "rate_limit_per_min": 3},
                               token_cache=TokenCacheSettings(unknown_lookups_per_ip_per_sec=0.01))
    running = await start_daemon(reactor, settings)
    replies: list[tuple[int, str]] = []

    async def send(path: str, body: bytes = b'{"a": 1}', headers: dict[str, str] | None = None,
                   method: str = "POST") -> None:
        status, reply, _ = await running.post(path, body, headers, method)
        replies.append((status, reply.get("error", "")))

    try:
        await send(f"/v1/inbox/{await running.mint('signed', signing_secret=b's3cret')}")
        gone = mint_token()
        await running.daemon.store.insert_token(TokenRecord(fingerprint(gone), "removed", "retired-template"))
        await send(f"/v1/inbox/{gone}")
        for tenant, body, headers in [
            ("single", b'{"a": ', {}), ("ndjson", b'{"a": 1}\n{"b": }\n', {}), ("string", b'"text"', {}),
            ("gzip", b"not gzip", {"Content-Encoding": "gzip"}), ("key", b"{}", {"X-AiSOC-Idempotency-Key": "k" * 256}),
            ("type", b"{}", {"Content-Type": "image/png"}), ("encoding", b"{}", {"Content-Encoding": "br"}),
            ("large", b"{}" * 8192, {}), ("deep", b'{"a":' * 65 + b"1" + b"}" * 65, {}),
            ("surrogate", b'{"a": "\\ud800"}', {}), ("digits", b'{"a": ' + b"7" * 4301 + b"}", {}),
        ]:
            await send(f"/v1/inbox/{await running.mint(tenant)}", body, headers)
        sns = json.dumps({"Type": "Notification", "TopicArn": "arn:aws:sns:eu-west-1:1:t", "MessageId": "m1",
                          "Message": '{"mail": {"commonHeaders": {"subject": "\\ud800"}}}'}).encode()
        await send(f"/v1/inbox/email/{await running.mint('relay', 'email-forwarded')}", sns,
                   {"Content-Type": "text/plain"})
        await send(f"/v1/inbox/{await running.mint('reader')}", b"", method="GET")
        busy = await running.mint("busy")
        for _ in range(4):
            await send(f"/v1/inbox/{busy}")
        held = await running.mint("held")
        await running.daemon.store.claim_idempotency_key(fingerprint(held), "k1", reactor.seconds(), 120, "another-request")
        await send(f"/v1/inbox/{held}", headers={"X-AiSOC-Idempotency-Key": "k1"})
        await send("/v1/inbox/a/b")
        await send(f"/v1/inbox/aisoc_inbox_{'z' * 52}")  # 401: spends this address's one unknown-token lookup…
        await send(f"/v1/inbox/aisoc_inbox_{'y' * 52}")  # …so the next unknown token is 429
        metrics = await running.metrics()
    finally:
        await running.stop()

    table = readme_errors_table()
    for status, error in [r for r in replies if r[0] >= 400]:
        rows = [patterns for s, _, patterns in table if s == status]
        assert any(p.fullmatch(error) for patterns in rows for p in patterns), f"undocumented: {status} {error!r}"
    for status, outcome, patterns in table:
        if (status, outcome) in ERRORS_PINNED_ELSEWHERE:
            continue
        for pattern in patterns:
            assert any(s == status and pattern.fullmatch(e) for s, e in replies), \
                f"no reply matched the README row {status} {pattern.pattern!r}"
        if outcome != "—":
            assert f'outcome="{outcome}",route="webhook"' in metrics, f"outcome {outcome} was not counted"


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
@pytest_twisted.ensureDeferred
async def test_no_read_surface(inboxd: RunningDaemon, method: str) -> None:
    """Any method but POST on an inbox path is 405 with a JSON message and Allow: POST."""
    token = await inboxd.mint()
    status, body, response = await inboxd.post(f"/v1/inbox/{token}", b"", method=method)
    assert status == 405
    assert body["error"].startswith(f"method {method} not allowed")
    assert response.headers.getRawHeaders("allow") == ["POST"]


@pytest.mark.parametrize("content_type", ["image/png", "application/xml", "multipart/form-data; boundary=x"])
@pytest_twisted.ensureDeferred
async def test_types_that_cannot_carry_json_are_415(inboxd: RunningDaemon, content_type: str) -> None:
    """A Content-Type that cannot carry JSON is 415 naming the type."""
    token = await inboxd.mint()
    status, body, _ = await inboxd.post(f"/v1/inbox/{token}", b'{"a": 1}', {"Content-Type": content_type})
    assert status == 415
    assert content_type.split(";")[0] in body["error"]
    assert inboxd.events() == []


@pytest_twisted.ensureDeferred
async def test_body_over_the_limit_is_413(inboxd: RunningDaemon) -> None:
    """A body past AISOC_INBOX_MAX_BODY_BYTES is 413 with a JSON message and nothing is published."""
    token = await inboxd.mint()
    big = json.dumps({"pad": "x" * (70 * 1024)}).encode()
    status, body, _ = await inboxd.post(f"/v1/inbox/{token}", big)
    assert status == 413
    assert "body too large" in body["error"]
    assert inboxd.events() == []
    assert outcome_count(await inboxd.metrics(), "webhook", "none", "too_large") == 1


@pytest_twisted.ensureDeferred
async def test_tokens_never_reach_the_logs(inboxd: RunningDaemon) -> None:
    """Neither a valid nor an invalid token appears in any log event, the access log included."""
    token = await inboxd.mint()
    seen: list[str] = []

    def observe(event: dict[str, Any]) -> None:
        from twisted.logger import formatEvent

        seen.append(formatEvent(event) + repr(event))

    globalLogPublisher.addObserver(observe)
    try:
        await inboxd.post(f"/v1/inbox/{token}", b'{"a": 1}')
        await inboxd.post(f"/v1/inbox/{token[:-3]}abc", b'{"a": 1}')
    finally:
        globalLogPublisher.removeObserver(observe)
    assert any("webhook 200 ok template=generic-json tenant=tenant-a token=" in line for line in seen), \
        "each request should have its log line"
    assert any("webhook 401 invalid_token" in line for line in seen)
    assert not any(token in line or token[:-3] in line for line in seen)


@pytest_twisted.ensureDeferred
async def test_https_with_a_verified_certificate(inboxd_tls: RunningDaemon) -> None:
    """Over TLS with a CA the test made, a verifying client delivers and gets the same reply."""
    assert inboxd_tls.base_url.startswith("https://")
    token = await inboxd_tls.mint("tenant-tls", "pagerduty")
    status, body, _ = await inboxd_tls.post(f"/v1/inbox/{token}", json.dumps(SPEC_EXAMPLE).encode())
    assert (status, body) == (200, {"accepted": 1, "template": "pagerduty"})
    [event] = inboxd_tls.events()
    assert validate_event(event) == []


@pytest_twisted.ensureDeferred
async def test_health_and_readiness(inboxd: RunningDaemon) -> None:
    """/healthz and /readyz answer 200 while the sink works; unknown paths are a JSON 404."""
    assert (await inboxd.post("/healthz", b"", method="GET"))[:2] == (200, {"status": "ok"})
    assert (await inboxd.post("/readyz", b"", method="GET"))[:2] == (200, {"status": "ok"})
    status, body, _ = await inboxd.post("/nope", b"", method="GET")
    assert (status, body) == (404, {"error": "no such route"})


@pytest_twisted.ensureDeferred
async def test_unwritable_log_is_503_with_retry_after(inboxd: RunningDaemon, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the sink cannot make events durable the sender gets 503 + Retry-After, never a 2xx, and a
    reply that names the problem but not the server's path."""
    token = await inboxd.mint()
    assert (await inboxd.post(f"/v1/inbox/{token}", b'{"a": 1}'))[0] == 200
    FailingDisk(monkeypatch, in_directory(inboxd.daemon.sink.path.parent), "EIO on write")
    status, body, response = await inboxd.post(f"/v1/inbox/{token}", b'{"a": 2}')
    assert (status, body) == (503, {"error": "events could not be made durable, retry later: the event log "
                                             "cannot be written: I/O error"})
    assert response.headers.getRawHeaders("retry-after") == ["5"]
    assert (await inboxd.post("/readyz", b"", method="GET"))[:2] == (
        503, {"status": "not ready", "error": "the sink cannot accept events: the event log cannot be written: I/O error"})


@pytest_twisted.ensureDeferred
async def test_one_structured_log_line_per_request(inboxd: RunningDaemon) -> None:
    """Each request logs once with route, template, tenant, fingerprint prefix, status, events, bytes
    and duration as structured keys."""
    from aisoc_inboxd.tokens import fingerprint

    token = await inboxd.mint("tenant-log", "generic-json")
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        body = b'{"a": 1}\n{"b": 2}'
        await inboxd.post(f"/v1/inbox/{token}", body)
    finally:
        globalLogPublisher.removeObserver(events.append)
    [line] = [e for e in events if e.get("route") == "webhook"]
    assert (line["status"], line["outcome"], line["template"], line["tenant"]) == (200, "ok", "generic-json", "tenant-log")
    assert line["token"] == fingerprint(token)[:8]
    assert (line["events"], line["bytes"]) == (2, len(body))
    assert line["duration_ms"] >= 0


@pytest_twisted.ensureDeferred
async def test_several_http_listeners_serve_the_same_inbox(reactor: Any, tmp_path: Path) -> None:
    """Two http.listen entries (e.g. plain on loopback and TLS outside) both bind and accept."""
    import treq

    tls = make_tls_files(tmp_path / "tls")
    settings = daemon_settings(tmp_path / "state", tls=tls)
    settings = dataclasses.replace(settings, http=dataclasses.replace(
        settings.http, listen=[*settings.http.listen, "tcp:0:interface=127.0.0.1"]))
    running = await start_daemon(reactor, settings, tls)
    try:
        token = await running.mint()
        plain = running.daemon.address("http-2")
        response = await treq.post(f"http://127.0.0.1:{plain.port}/v1/inbox/{token}", data=b'{"a": 1}')
        assert response.code == 200
        assert (await running.post(f"/v1/inbox/{token}", b'{"a": 2}'))[0] == 200
        assert len(running.events()) == 2
    finally:
        await running.stop()
