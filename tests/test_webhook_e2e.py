"""
POST /v1/inbox/{tenant_token} against the real daemon over real sockets (HTTP and verified TLS):
durability in the event log on disk and its failure, the metrics listener, the request's log line,
several listeners, and valid OCSF out. The replies and the Errors table are tested in memory, in
test_webhook_replies.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
import pytest_twisted
from twisted.logger import globalLogPublisher

from aisoc_inboxd.normalizer import validate_event
from tests.support.daemon import RunningDaemon, daemon_settings, start_daemon
from tests.support.filesystem import FailingDisk, in_directory
from tests.support.ocsf import assert_valid_ocsf
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
