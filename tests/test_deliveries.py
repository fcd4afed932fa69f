"""
Recent deliveries (issue 18): what each token's sender sent, what it got back and the first OCSF
event it became, kept in bounded memory and read through the admin API; in memory over the real
resource trees (L{aisoc_inboxd.testing.MemoryInbox}).
"""
from __future__ import annotations

import dataclasses
import gc
import gzip
import json
import socket
from pathlib import Path
from typing import Any, Callable

import pytest
import pytest_twisted
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.protocols.policies import WrappingFactory
from twisted.web.template import flattenString

from aisoc_inboxd.config import CefSettings, ConfigError, DeliverySettings, HttpSettings, load_settings
from aisoc_inboxd.deliveries import RECORD_OVERHEAD, REDACTED, Delivery, DeliveryLog, FirstEvent, redact_headers
from aisoc_inboxd.deliveries import FrameSamples, header_pairs, redacted_header_pairs
from aisoc_inboxd.testing import FakeStore, MemoryInbox
from aisoc_inboxd.tokens import fingerprint
from aisoc_inboxd.web.status_deliveries import deliveries_section


@pytest.fixture
def inbox() -> MemoryInbox:
    return MemoryInbox(FakeStore())


async def deliveries(inbox: MemoryInbox, tenant: str, key: str) -> list[dict]:
    status, body, _ = await inbox.call_admin("GET", f"/v1/admin/tenants/{tenant}/tokens/{key}/deliveries")
    assert status == 200, body
    return body["deliveries"]


@pytest_twisted.ensureDeferred
async def test_accepted_delivery_keeps_request_reply_and_first_event(inbox: MemoryInbox) -> None:
    """An accepted request is kept with its client, route, status, events, the body as sent, the
    exact reply and the first OCSF event it became."""
    token = await inbox.mint()
    body = b'{"id": "a1", "title": "disk full", "severity": "high"}\n{"id": "a2"}\n'
    status, reply, _ = await inbox.post(f"/v1/inbox/{token}", body, {"Content-Type": "application/x-ndjson",
                                                                      "X-Vendor-Event": "alert"})
    assert status == 200
    [kept] = await deliveries(inbox, "acme", fingerprint(token))
    assert kept["n"] == 1 and kept["route"] == "webhook" and kept["method"] == "POST"
    assert (kept["status"], kept["outcome"], kept["events"], kept["error"]) == (200, "ok", 2, None)
    assert kept["template"] == "generic-json" and kept["client"]
    assert kept["request"]["body"] == {"kept": True, "lost": False, "size": len(body), "truncated": False,
                                       "encoding": "utf-8", "text": body.decode()}
    assert ["X-Vendor-Event", "alert"] in kept["request"]["headers"]
    assert json.loads(kept["response"]["body"]) == reply
    assert "disk full" in json.dumps(kept["ocsf"])
    assert json.loads(kept["ocsf"]["raw_data"])["id"] == "a1"


@pytest.mark.parametrize("body_bytes", [4096, 8], ids=["rendered-when-read", "rendered-at-once"])
@pytest_twisted.ensureDeferred
async def test_first_event_is_the_published_event_rendered_once(body_bytes: int) -> None:
    """The first event a delivery shows is the event that was published (all but its own
    metadata.uid), whether it is rendered when the delivery is first read (a record that fits in
    body_bytes) or when the delivery is kept (a larger one), and every read shows the same event."""
    inbox = MemoryInbox(FakeStore(), deliveries_settings=DeliverySettings(body_bytes=body_bytes))
    token = await inbox.mint()
    body = b'{"id": "a1", "title": "disk full", "severity": "high", "time": "2026-01-02T03:04:05Z"}'
    status, _, _ = await inbox.post(f"/v1/inbox/{token}", body)
    assert status == 200
    [published] = inbox.events()
    [first] = await deliveries(inbox, "acme", fingerprint(token))
    [again] = await deliveries(inbox, "acme", fingerprint(token))
    assert first["ocsf"] == again["ocsf"]
    for event in (first["ocsf"], published):
        del event["metadata"]["uid"]
    assert first["ocsf"] == published


def test_a_first_event_held_for_later_is_counted_by_its_record_and_rendered_once() -> None:
    """A first event rendered when read counts its bound against max_bytes from the start, and is
    rendered at most once."""
    renders = []

    def render() -> tuple[str | None, str | None]:
        renders.append(1)
        return '{"class_uid": 2004}', None
    event = FirstEvent(render, 400)
    delivery = dataclasses.replace(_delivery("a", 1, 10), first_event=event)
    assert delivery.size() == _delivery("a", 1, 10).size() + 400 and renders == []
    assert delivery.ocsf == '{"class_uid": 2004}' and delivery.ocsf_error is None
    assert delivery.as_dict()["ocsf"] == {"class_uid": 2004} and renders == [1]


@pytest_twisted.ensureDeferred
async def test_bad_body_is_kept_with_the_reply_and_the_parse_error(inbox: MemoryInbox) -> None:
    """A 400 for a body that is not JSON is kept with the body the sender posted and the error
    naming the line and column: what the user needs to see why the sender got a 400."""
    token = await inbox.mint()
    status, reply, _ = await inbox.post(f"/v1/inbox/{token}", b'{"id": 1,\n "title": oops}')
    assert status == 400
    [kept] = await deliveries(inbox, "acme", fingerprint(token))
    assert (kept["status"], kept["outcome"]) == (400, "bad_request")
    assert "line 2 column" in kept["error"] and kept["error"] == reply["error"]
    assert kept["request"]["body"]["text"] == '{"id": 1,\n "title": oops}'
    assert kept["ocsf"] is None


@pytest_twisted.ensureDeferred
async def test_gzip_body_is_kept_decompressed_and_prefix_marked_truncated() -> None:
    """The body is kept as the sender meant it (gzip undone), only its first body_bytes, marked
    truncated with its full size."""
    inbox = MemoryInbox(FakeStore(), deliveries_settings=DeliverySettings(body_bytes=16))
    token = await inbox.mint()
    body = json.dumps({"title": "x" * 100}).encode()
    await inbox.post(f"/v1/inbox/{token}", gzip.compress(body), {"Content-Encoding": "gzip"})
    [kept] = await deliveries(inbox, "acme", fingerprint(token))
    assert kept["request"]["body"] == {"kept": True, "lost": False, "size": len(body), "truncated": True,
                                       "encoding": "utf-8",
                                       "text": body[:16].decode()}


@pytest.mark.parametrize("settings, tenant", [
    (DeliverySettings(keep_bodies=False), "acme"),
    (DeliverySettings(without_bodies=["acme"]), "acme"),
])
@pytest_twisted.ensureDeferred
async def test_keep_bodies_off_keeps_only_metadata(settings: DeliverySettings, tenant: str) -> None:
    """deliveries.keep_bodies: false (or the tenant in deliveries.without_bodies) keeps the status,
    outcome and headers but neither the body nor the OCSF event made of it."""
    inbox = MemoryInbox(FakeStore(), deliveries_settings=settings)
    token = await inbox.mint(tenant)
    await inbox.post(f"/v1/inbox/{token}", b'{"title": "tenant data"}')
    [kept] = await deliveries(inbox, tenant, fingerprint(token))
    assert kept["status"] == 200 and kept["events"] == 1
    assert kept["request"]["body"] == {"kept": False, "lost": False, "size": 24, "truncated": False}
    assert kept["ocsf"] is None and "tenant data" not in json.dumps(kept)
    assert "(body of 24 bytes not kept: deliveries.keep_bodies)" in await shown(kept)


@pytest_twisted.ensureDeferred
async def test_deliveries_are_tenant_scoped_and_newest_first(inbox: MemoryInbox) -> None:
    """Another tenant reads no deliveries of this tenant's token; they list newest first, and a
    fingerprint prefix finds them."""
    token = await inbox.mint("acme")
    for i in range(3):
        await inbox.post(f"/v1/inbox/{token}", json.dumps({"i": i}).encode())
    fp = fingerprint(token)
    assert [d["n"] for d in await deliveries(inbox, "acme", fp)] == [3, 2, 1]
    assert [d["n"] for d in await deliveries(inbox, "acme", fp[:12])] == [3, 2, 1]
    assert await deliveries(inbox, "other", fp) == []
    assert await deliveries(inbox, "other", fp[:12]) == []


@pytest_twisted.ensureDeferred
async def test_unknown_token_is_not_recorded(inbox: MemoryInbox) -> None:
    """A request whose token does not resolve belongs to no token: nothing is kept."""
    await inbox.post("/v1/inbox/aisoc_inbox_" + "a" * 52, b"{}")
    assert inbox.deliveries.count() == 0


@pytest_twisted.ensureDeferred
async def test_cef_route_keeps_its_own_ring() -> None:
    """The token-less CEF route keeps its deliveries under the CEF tenant, its shared-secret header
    redacted."""
    inbox = MemoryInbox(FakeStore(), cef=CefSettings(tenant="acme", shared_secret_header="X-Cef-Pass",
                                                     shared_secret="cef-shared-secret-value"))
    line = b"CEF:0|Acme|IDS|1.0|100|Port scan|5|src=10.0.0.1\nnot cef\n"
    status, reply, _ = await inbox.post("/v1/inbox/cef", line, {"X-Cef-Pass": "cef-shared-secret-value"})
    assert status == 200 and reply["malformed"] == 1
    status, body, _ = await inbox.call_admin("GET", "/v1/admin/tenants/acme/cef/deliveries")
    [kept] = body["deliveries"]
    assert kept["route"] == "cef" and kept["events"] == 1
    assert ["X-Cef-Pass", REDACTED] in kept["request"]["headers"]
    assert kept["ocsf"]["metadata"]["product"]["name"] == "IDS"
    assert "cef-shared-secret-value" not in json.dumps(body)


@pytest_twisted.ensureDeferred
async def test_cef_route_keeps_a_refusal_made_before_its_body_was_read() -> None:
    """A CEF request refused before its body was read (its tenant over the rate limit) is kept with
    its status, its client having had the reply: its body is not said to be lost, which is only for
    a client that left."""
    inbox = MemoryInbox(FakeStore(), http_settings=HttpSettings(rate_limit_per_min=1),
                        cef=CefSettings(tenant="acme", shared_secret_header="X-Cef-Pass",
                                        shared_secret="cef-shared-secret-value"))
    line = b"CEF:0|Acme|IDS|1.0|100|Port scan|5|src=10.0.0.1\n"
    statuses = [(await inbox.post("/v1/inbox/cef", line, {"X-Cef-Pass": "cef-shared-secret-value"}))[0]
                for _ in range(2)]
    assert statuses == [200, 429]
    status, body, _ = await inbox.call_admin("GET", "/v1/admin/tenants/acme/cef/deliveries")
    assert [(d["status"], d["request"]["body"]["lost"]) for d in body["deliveries"]] == [(429, False), (200, False)]


@pytest_twisted.ensureDeferred
async def test_cef_request_without_the_shared_secret_is_not_kept() -> None:
    """Like a token that does not resolve, a CEF request without the shared secret belongs to no
    tenant: it is not kept, and does not hide the tenant's CEF deliveries."""
    inbox = MemoryInbox(FakeStore(), cef=CefSettings(tenant="acme", shared_secret_header="X-Cef-Pass",
                                                     shared_secret="cef-shared-secret-value"))
    line = b"CEF:0|Acme|IDS|1.0|100|Port scan|5|src=10.0.0.1\n"
    assert (await inbox.post("/v1/inbox/cef", line, {"X-Cef-Pass": "cef-shared-secret-value"}))[0] == 200
    assert (await inbox.post("/v1/inbox/cef", line, {"X-Cef-Pass": "not-the-secret"}))[0] == 401
    status, body, _ = await inbox.call_admin("GET", "/v1/admin/tenants/acme/cef/deliveries")
    assert [d["status"] for d in body["deliveries"]] == [200]
    assert inbox.deliveries.count() == 1


def test_credential_headers_are_redacted() -> None:
    """Every header that may carry a credential or its proof is redacted, by name or by holding a
    token-shaped value; the idempotency key and ordinary headers are kept."""
    headers = [("Authorization", "Splunk x"), ("Cookie", "s=1"), ("X-Hub-Signature-256", "sha256=ab"),
               ("X-Splunk-Token", "t"), ("X-Api-Key", "k"), ("X-Vendor-Secret", "s"),
               ("Proxy-Authorization", "Basic x"), ("X-Anything", "aisoc_inbox_abc"),
               ("X-AiSOC-Idempotency-Key", "k1"), ("Content-Type", "application/json"),
               ("X-GitHub-Delivery", "d1")]
    assert redact_headers(headers) == [(n, REDACTED) for n, _ in headers[:8]] + headers[8:]


#: raw header names and values as twisted.web hands them over, credential-shaped ones among them
_NAMES = st.sampled_from([b"Authorization", b"Cookie", b"X-Hub-Signature-256", b"X-Api-Key", b"X-Cef-Pass",
                          b"X-Aisoc-Idempotency-Key", b"Content-Type", b"User-Agent", b"X-Vendor-Key",
                          b"X-\xc9v\xe9nement-Token", b"Host"]) | st.binary(min_size=1, max_size=12)
_VALUES = (st.binary(max_size=24) | st.sampled_from([b"aisoc_inbox_" + b"a" * 52, b"Bearer aisoc_inbox_x", b"caf\xe9",
                                                     b"AISOC_INBOX_upper", b"aisoc_inbo"]))


@settings(max_examples=500)
@given(st.lists(st.tuples(_NAMES, st.lists(_VALUES, min_size=1, max_size=3)), max_size=8),
       st.sets(st.sampled_from(["x-cef-pass", "host", "x-aisoc-idempotency-key", "x-other"]), max_size=2))
def test_one_pass_redaction_is_the_reference(raw: list[tuple[bytes, list[bytes]]], secret_names: set[str]) -> None:
    """The recorder's one pass over raw headers gives exactly the reference: every value decoded
    (header_pairs), then redacted by name, by the route's secret names or by a token-shaped value."""
    assert (redacted_header_pairs(raw, frozenset(secret_names))
            == redact_headers(header_pairs(raw), secret_names))


_TEXTS = st.text(max_size=12) | st.sampled_from([REDACTED, "caf\xe9", "\U0001f600"])


@settings(max_examples=500)
@given(st.lists(st.tuples(_TEXTS, _TEXTS), max_size=8), st.lists(st.tuples(_TEXTS, _TEXTS), max_size=5),
       _TEXTS, st.binary(max_size=20) | st.none(), _TEXTS | st.none(), st.integers(0, 5000) | st.none())
def test_a_records_size_is_the_reference(request_headers: list[tuple[str, str]],
                                         response_headers: list[tuple[str, str]], response_body: str,
                                         body: bytes | None, error: str | None, first_event: int | None) -> None:
    """What a record counts against deliveries.max_bytes is the reference sum: the overhead, every
    character of every redacted header name and value, the reply, the kept body, the error and the
    first event's bound."""
    delivery = dataclasses.replace(
        _delivery("a", 1, 0), request_headers=request_headers, response_headers=response_headers,
        response_body=response_body, body=body, error=error,
        first_event=FirstEvent.rendered("x" * first_event, None) if first_event is not None else None)
    reference = (RECORD_OVERHEAD + sum(len(text) for pair in request_headers + response_headers for text in pair)
                 + len(response_body) + len(body or b"") + len(error or "") + (first_event or 0))
    assert delivery.size() == reference


def _delivery(key: str, number: int, body_size: int) -> Delivery:
    return Delivery(key=key, number=number, tenant_id="acme", received_at=0.0, client=None, route="webhook",
                    method="POST", status=200, outcome="ok", template="generic-json", events=1, error=None,
                    duration_ms=1.0, request_headers=[], response_headers=[], response_body="{}",
                    body=b"x" * body_size, body_size=body_size)


def test_ring_keeps_the_last_per_token() -> None:
    """Each token keeps its last per_token deliveries, numbered on."""
    log = DeliveryLog(DeliverySettings(per_token=3))
    for n in range(1, 8):
        log.add(_delivery("a", n, 10))
    log.add(_delivery("b", 1, 10))
    assert [d.number for d in log.of("a", "acme")] == [7, 6, 5]
    assert log.count() == 4
    assert log.bytes == sum(d.size() for key in "ab" for d in log.of(key, "acme"))


def test_total_bytes_evict_the_oldest_of_any_token() -> None:
    """Past max_bytes the oldest delivery of any token goes first, and the total stays under it,
    however many tokens deliver."""
    one = _delivery("t", 1, 1000).size()
    log = DeliveryLog(DeliverySettings(per_token=50, max_bytes=10 * one))
    for n in range(1, 4):
        log.add(_delivery("old", n, 1000))
    for token in range(200):
        log.add(_delivery(f"t{token}", 1, 1000))
        assert log.bytes <= 10 * one
    assert log.of("old", "acme") == []
    assert log.count() == 10
    assert [k for k in (f"t{t}" for t in range(200)) if log.of(k, "acme")] == [f"t{t}" for t in range(190, 200)]


def test_with_workers_each_process_keeps_its_share_of_max_bytes() -> None:
    """With C{workers: N} every process keeps 1/N of C{max_bytes}, so the daemon's processes together
    hold no more than the setting."""
    one = _delivery("t", 1, 1000).size()
    log = DeliveryLog(DeliverySettings(per_token=50, max_bytes=10 * one), worker=1, processes=2)
    for token in range(20):
        log.add(_delivery(f"t{token}", 1, 1000))
        assert log.bytes <= 5 * one
    assert log.count() == 5


def redeliver_path(tenant: str, key: str, n: int) -> str:
    return f"/v1/admin/tenants/{tenant}/tokens/{key}/deliveries/{n}/redeliver"


@pytest_twisted.ensureDeferred
async def test_redeliver_publishes_the_body_again_with_its_own_idempotency_key(inbox: MemoryInbox) -> None:
    """A delivery the sender sent with an idempotency key is published again under a key of its own
    (not a replay of the sender's), kept as a new delivery naming the one it repeats; the same
    redelivery key again is a replay that publishes nothing."""
    token = await inbox.mint()
    fp = fingerprint(token)
    body = b'{"id": "a1", "title": "disk full"}'
    await inbox.post(f"/v1/inbox/{token}", body, {"X-AiSOC-Idempotency-Key": "sender-key"})
    status, reply, _ = await inbox.call_admin("POST", redeliver_path("acme", fp[:12], 1))
    assert status == 200, reply
    assert reply["redelivered"] == 1 and reply["n"] == 2 and reply["replay"] is False
    assert reply["accepted"] == 1 and reply["template"] == "generic-json"
    assert reply["idempotency_key"] != "sender-key"
    assert [json.loads(e["raw_data"]) for e in inbox.events()] == [json.loads(body)] * 2
    newest = (await deliveries(inbox, "acme", fp))[0]
    assert newest["n"] == 2 and newest["events"] == 1 and newest["client"] == "redelivered by the admin API"
    assert ["X-AiSOC-Redelivery-Of", "1"] in newest["request"]["headers"]
    assert "disk full" in json.dumps(newest["ocsf"])

    response = await inbox.admin_http.request(
        "POST", "http://admin" + redeliver_path("acme", fp, 1),
        headers={"Authorization": [b"Bearer admin-key-for-tests"], "X-AiSOC-Idempotency-Key": [reply["idempotency_key"]]})
    again = json.loads(await response.content())
    assert response.code == 200 and again["replay"] is True
    assert len(inbox.events()) == 2


@pytest.mark.parametrize("settings, body, status, message", [
    (DeliverySettings(keep_bodies=False), b'{"a": 1}', 409, "the body of delivery 1 was not kept"),
    (DeliverySettings(body_bytes=4), b'{"a": 1}', 409, "only the first 4 of the 8 bytes of delivery 1's body"),
])
@pytest_twisted.ensureDeferred
async def test_redeliver_refuses_a_body_not_kept_whole(settings: DeliverySettings, body: bytes, status: int,
                                                       message: str) -> None:
    """A delivery whose body was not kept, or kept only in part, is not redelivered: 409 saying why."""
    inbox = MemoryInbox(FakeStore(), deliveries_settings=settings)
    token = await inbox.mint()
    await inbox.post(f"/v1/inbox/{token}", body)
    code, reply, _ = await inbox.call_admin("POST", redeliver_path("acme", fingerprint(token), 1))
    assert code == status and message in reply["error"]
    assert len(inbox.events()) == 1


@pytest_twisted.ensureDeferred
async def test_redeliver_refuses_unknown_deliveries_other_tenants_and_retired_tokens(inbox: MemoryInbox) -> None:
    """A delivery not kept is 404 (also when asked as another tenant); a revoked token's is 409."""
    token = await inbox.mint()
    fp = fingerprint(token)
    await inbox.post(f"/v1/inbox/{token}", b'{"a": 1}')
    assert (await inbox.call_admin("POST", redeliver_path("acme", fp, 9)))[0] == 404
    assert (await inbox.call_admin("POST", redeliver_path("other", fp, 1)))[0] == 404
    assert (await inbox.call_admin("POST", redeliver_path("acme", fp, "x")))[0] == 400  # type: ignore[arg-type]
    await inbox.admin.revoke("acme", fp)
    code, reply, _ = await inbox.call_admin("POST", redeliver_path("acme", fp, 1))
    assert code == 409 and "no longer active" in reply["error"]
    assert len(inbox.events()) == 1


def test_syslog_listener_samples_its_last_frames_and_malformed_ones() -> None:
    """A syslog listener keeps its last per_token frames (with the peer) and, apart, its last
    malformed ones with the reason; their memory is reserved in max_bytes up front."""
    from tests.test_syslog_listeners import connect, make_listener

    log = DeliveryLog(DeliverySettings(per_token=3, body_bytes=64))
    samples = FrameSamples(log, "t", "acme")
    listener, _, _ = make_listener(samples=samples)
    protocol, _ = connect(listener)
    protocol.dataReceived(b"".join(f"<13>Oct 11 22:14:15 host app: line {i}\n".encode() for i in range(5)))
    protocol.dataReceived(b"<13>Oct 11 22:14:15 host CEF:0|broken\n")
    frames = samples.deliveries(malformed=False)
    assert [d.body for d in frames] == [b"<13>Oct 11 22:14:15 host CEF:0|broken",
                                        b"<13>Oct 11 22:14:15 host app: line 4",
                                        b"<13>Oct 11 22:14:15 host app: line 3"]
    assert {d.client for d in frames} == {"192.0.2.7"}
    [malformed] = samples.deliveries(malformed=True)
    assert malformed.outcome == "malformed" and malformed.error and malformed.body.endswith(b"CEF:0|broken")
    assert log.reserved == 2 * 3 * (RECORD_OVERHEAD + 64)


@pytest.mark.parametrize("frame, problem", [
    (b"<13>Oct 11 22:14:15 host CEF:0|broken",
     "malformed CEF: CEF header has 2 of 7 '|'-separated fields (CEF header at column 26)"),
    (b"<13>Oct 11 22:14:15 host CEF:7|Acme|IDS|1|100|Port scan|5|src=10.0.0.1",
     "malformed CEF: unsupported CEF version 7 (only 0 and 1) (CEF header at column 26)"),
    (b"<13>Oct 11 22:14:15 host CEF:0|Acme|IDS|1|100|Port scan|5|scan from 10.0.0.1 src=10.0.0.1",
     "malformed CEF: extension does not start with key=value (extension at column 59)"),
    (b"<13>Oct 11 22:14:15 host CEF:0|Acme|IDS|1|100|Port scan|5\\",
     "malformed CEF: CEF header ends in a lone backslash (CEF header at column 26)"),
])
def test_a_malformed_frame_names_its_problem_and_where(frame: bytes, problem: str) -> None:
    """A syslog listener's malformed frame is kept with what the CEF parser says is wrong and the
    column of the part it is about (the CEF header, or the extension once the header was read)."""
    from tests.test_syslog_listeners import connect, make_listener

    samples = FrameSamples(DeliveryLog(DeliverySettings()), "t", "acme")
    listener, _, _ = make_listener(samples=samples)
    protocol, _ = connect(listener)
    protocol.dataReceived(frame + b"\n")
    [malformed] = samples.deliveries(malformed=True)
    assert malformed.error == problem
    column = int(problem.rsplit(" ", 1)[1].rstrip(")"))
    assert frame[column - 1:].startswith(b"scan from" if "extension" in problem else b"CEF:")


@pytest_twisted.ensureDeferred
async def test_syslog_samples_are_read_through_the_admin_api_of_their_tenant(inbox: MemoryInbox) -> None:
    """GET …/syslog/{listener}/deliveries and …/malformed answer the listener's tenant only."""
    samples = FrameSamples(inbox.deliveries, "tcp", "acme")
    samples.frames([b"<13>hello"], 1.0, "192.0.2.7")
    status, body, _ = await inbox.call_admin("GET", "/v1/admin/tenants/acme/syslog/tcp/deliveries")
    assert status == 200 and [d["request"]["body"]["text"] for d in body["deliveries"]] == ["<13>hello"]
    status, body, _ = await inbox.call_admin("GET", "/v1/admin/tenants/acme/syslog/tcp/malformed")
    assert status == 200 and body["deliveries"] == []
    status, body, _ = await inbox.call_admin("GET", "/v1/admin/tenants/other/syslog/tcp/deliveries")
    assert status == 404 and body == {"error": "tenant other has no syslog listener named 'tcp'"}


@pytest.mark.parametrize("raw, message", [
    ({"deliveries": {"per_token": -1}}, "deliveries.per_token: must be 0 or more, got -1"),
    ({"deliveries": {"max_bytes": 0}}, "deliveries.max_bytes: must be greater than 0, got 0"),
    ({"deliveries": {"keep_bodies": "no"}}, "deliveries.keep_bodies: expected bool"),
])
def test_delivery_settings_are_checked(tmp_path: Path, raw: dict, message: str) -> None:
    """A bad deliveries setting stops start-up naming the key."""
    path = tmp_path / "inboxd.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as error:
        load_settings(path, {})
    assert message in str(error.value)


async def shown(delivery: dict[str, Any]) -> str:
    """The status page's text of one listed delivery (its request, reply and event side by side)."""
    listing = {"tenant": "acme", "key": delivery["key"], "per_token": 50, "deliveries": [delivery]}
    return (await flattenString(None, deliveries_section(listing, "form-token"))).decode("utf-8")


class HeldLookups(FakeStore):
    """
    A store whose token lookups answer only when the test says so, so a client can leave while its
    request waits on one.
    """

    def __init__(self) -> None:
        super().__init__()
        self.waiting: list[tuple[Deferred, str]] = []

    def resolve(self, fingerprint: str) -> Deferred:
        held: Deferred = Deferred()
        self.waiting.append((held, fingerprint))
        return held

    def answer(self) -> None:
        for held, key in self.waiting:
            FakeStore.resolve(self, key).chainDeferred(held)
        self.waiting.clear()


async def _until(reactor: Any, condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        await deferLater(reactor, 0.01)
    raise AssertionError("the condition did not come true within 5 s")


@pytest.mark.parametrize("refusal", ["unknown template", "rate limited"])
@pytest_twisted.ensureDeferred
async def test_a_refused_request_whose_client_left_is_still_recorded(reactor: Any, refusal: str) -> None:
    """A request refused before its body was read (its template is gone, its tenant is over the rate
    limit) whose client closed its socket while the token was being looked up is recorded like any
    other refusal, with no reply and no body (twisted.web dropped it with the connection), and
    nothing is logged as an error."""
    store = HeldLookups()
    inbox = MemoryInbox(store, http_settings=HttpSettings(rate_limit_per_min=1))
    token = await inbox.mint()
    if refusal == "unknown template":
        key = fingerprint(token)
        store.tokens[key] = dataclasses.replace(store.tokens[key], template_id="retired-template")
    else:  # the tenant's one request of the minute is spent by another of its tokens
        spender = Deferred.fromCoroutine(inbox.intake.authorize(await inbox.mint()))
        store.answer()
        await spender
    site = WrappingFactory(inbox.http._agent._serverFactory)  # the listener's own site, on a real socket
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    errors: list[dict] = []
    observer = (lambda event: errors.append(event) if event.get("log_level") == LogLevel.critical
                or event.get("isError") or "log_failure" in event else None)
    globalLogPublisher.addObserver(observer)
    try:
        client = socket.create_connection(("127.0.0.1", port.getHost().port))
        client.sendall(f"POST /v1/inbox/{token} HTTP/1.1\r\nHost: inbox\r\nContent-Length: 8\r\n\r\n"
                       '{"a": 1}'.encode())
        await _until(reactor, lambda: bool(store.waiting))
        client.close()
        await _until(reactor, lambda: not site.protocols)  # the server saw the client leave
        store.answer()
        gc.collect()  # a Deferred that failed unhandled is logged when collected
    finally:
        globalLogPublisher.removeObserver(observer)
        await port.stopListening()
    assert [formatEvent(e) for e in errors] == []
    [delivery] = inbox.deliveries.of(fingerprint(token), "acme")
    assert (delivery.status, delivery.response_body, delivery.body) == (
        400 if refusal == "unknown template" else 429, "", None)
    [listed] = await deliveries(inbox, "acme", fingerprint(token))
    assert listed["request"]["body"] == {"kept": False, "lost": True, "size": 0, "truncated": False}
    page = await shown(listed)
    assert "(body lost: the client left before it was read)" in page and "keep_bodies" not in page
    code, reply, _ = await inbox.call_admin("POST", redeliver_path("acme", fingerprint(token), 1))
    assert (code, reply["error"]) == (409, "the body of delivery 1 was lost: its client left before it was read: "
                                         "there is nothing whole to redeliver")
