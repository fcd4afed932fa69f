"""
The Splunk HEC routes in memory (the real resource tree over fakes, through StubTreq; see
L{aisoc_inboxd.testing}): every reply of Splunk's table byte for byte, the paths, the auth forms,
batches that go bad part-way, raw lines, indexer acknowledgement, valid OCSF events, and an access
log without tokens. Real clients against the real daemon are in test_hec_clients.
"""
from __future__ import annotations

import base64
import gzip
import json
import os
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.logger import formatEvent, globalLogPublisher

from aisoc_inboxd.config import HecSettings, HttpSettings
from aisoc_inboxd.store import TokenRecord
from aisoc_inboxd.testing import FakeStore, MemoryInbox
from aisoc_inboxd.tokens import fingerprint, mint_token
from tests.support.ocsf import assert_valid_ocsf

CHANNEL = "FE0ECFAD-13D5-401B-847D-77833BD77131"
SUCCESS = b'{"text":"Success","code":0}'


@pytest.fixture
def inboxd() -> MemoryInbox:
    return MemoryInbox(FakeStore(), http_settings=HttpSettings(max_body_bytes=64 * 1024))


async def send(inboxd: MemoryInbox, path: str, body: bytes = b"",
               headers: dict[str, str] | None = None, method: str = "POST") -> tuple[int, bytes, Any]:
    """
    One request; the status, the body bytes exactly as sent, and the response.
    """
    response = await inboxd.http.request(method, inboxd.base_url + path, data=body,
                                         headers={k: [v] for k, v in (headers or {}).items()})
    return response.code, await response.content(), response


def splunk(token: str) -> dict[str, str]:
    return {"Authorization": f"Splunk {token}"}


async def hec_token(inboxd: MemoryInbox, acks: bool = False, secret: bytes | None = None) -> str:
    return (await inboxd.admin.mint("tenant-a", "splunk-hec", signing_secret=secret, hec_acks=acks)).token


def metric(metrics: str, outcome: str, template: str = "splunk-hec") -> float:
    needle = f'aisoc_ingest_inbox_requests_total{{outcome="{outcome}",route="hec",template="{template}"}} '
    return next((float(line[len(needle):]) for line in metrics.splitlines() if line.startswith(needle)), 0.0)


# -- success and paths ----------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_spec_example_is_exactly_splunks_success_and_valid_ocsf(inboxd: MemoryInbox) -> None:
    """The spec's curl example on /v1/inbox/hec answers Splunk's exact Success bytes, and its event is valid OCSF with the envelope mapped."""
    token = await hec_token(inboxd)
    body = (Path(__file__).parent / "fixtures" / "hec" / "aisoc-spec-example.txt").read_bytes()
    status, content, response = await send(inboxd, "/v1/inbox/hec", body,
                                           {**splunk(token), "Content-Type": "application/json"})
    assert (status, content) == (200, SUCCESS)
    assert response.headers.getRawHeaders("content-type") == ["application/json; charset=UTF-8"]
    [event] = inboxd.events()
    assert_valid_ocsf(event)
    assert (event["class_uid"], event["metadata"]["tenant_uid"], event["metadata"]["log_source"]) == (0, "tenant-a", "hec")
    assert event["metadata"]["log_name"] == "auth"
    assert event["unmapped"]["event"] == {"action": "login_failed", "user": "alice"}
    assert metric(inboxd.metrics_text(), "ok") == 1


@pytest.mark.parametrize("path", ["/v1/inbox/hec", "/services/collector", "/services/collector/event",
                                  "/services/collector/event/1.0"])
@pytest_twisted.ensureDeferred
async def test_every_event_path_takes_envelopes(inboxd: MemoryInbox, path: str) -> None:
    """Each event path accepts a concatenated batch and publishes one OCSF event per envelope, envelope time first."""
    token = await hec_token(inboxd)
    body = (b'{"time": 1433188255.5, "host": "h1", "source": "app", "sourcetype": "st", "index": "main", '
            b'"event": {"message": "one", "time": 5}}{"event": "two", "fields": {"env": "prod"}}')
    assert (await send(inboxd, path, body, splunk(token)))[:2] == (200, SUCCESS)
    first, second = inboxd.events()
    for event in (first, second):
        assert_valid_ocsf(event)
    assert (first["message"], first["time"], first["metadata"]["reporter"]["hostname"]) == ("one", 1433188255500, "h1")
    assert (second["message"], second["unmapped"]["fields"]) == ("two", {"env": "prod"})


@pytest.mark.parametrize("path", ["/services/collector/health", "/services/collector/health/1.0"])
@pytest_twisted.ensureDeferred
async def test_health_needs_no_token(inboxd: MemoryInbox, path: str) -> None:
    """GET health answers 200 code 17 without any token."""
    assert (await send(inboxd, path, method="GET"))[:2] == (200, b'{"text":"HEC is healthy","code":17}')


@pytest.mark.parametrize("path", ["/services/collector/nope", "/services/collector/event/2.0",
                                  "/services/collector/ack/1.0", "/services/collector/raw/1.0/x"])
@pytest_twisted.ensureDeferred
async def test_unknown_collector_paths_are_404(inboxd: MemoryInbox, path: str) -> None:
    """Paths Splunk does not serve under /services/collector are a JSON 404."""
    assert (await send(inboxd, path))[0] == 404


# -- the reply table ------------------------------------------------------------------------------

TABLE = [
    # (case, path, headers (TOKEN is replaced), body, status, exact body)
    ("no Authorization", "/services/collector/event", {}, b'{"event":"x"}',
     401, b'{"text":"Token is required","code":2}'),
    ("empty Splunk credentials", "/services/collector/event", {"Authorization": "Splunk "}, b'{"event":"x"}',
     401, b'{"text":"Token is required","code":2}'),
    ("Bearer scheme", "/services/collector/event", {"Authorization": "Bearer TOKEN"}, b'{"event":"x"}',
     401, b'{"text":"Invalid authorization","code":3}'),
    ("bare token", "/services/collector/event", {"Authorization": "TOKEN"}, b'{"event":"x"}',
     401, b'{"text":"Invalid authorization","code":3}'),
    ("Basic that is not base64", "/services/collector/event", {"Authorization": "Basic %%%"}, b'{"event":"x"}',
     401, b'{"text":"Invalid authorization","code":3}'),
    ("unknown token", "/services/collector/event", {"Authorization": "Splunk aisoc_inbox_" + "a" * 52},
     b'{"event":"x"}', 403, b'{"text":"Invalid token","code":4}'),
    ("Splunk GUID token", "/services/collector/event", {"Authorization": "Splunk " + CHANNEL},
     b'{"event":"x"}', 403, b'{"text":"Invalid token","code":4}'),
    ("empty body", "/services/collector/event", {"Authorization": "Splunk TOKEN"}, b"",
     400, b'{"text":"No data","code":5}'),
    ("empty raw body", "/services/collector/raw", {"Authorization": "Splunk TOKEN"}, b"\n",
     400, b'{"text":"No data","code":5}'),
    ("bad JSON", "/services/collector/event", {"Authorization": "Splunk TOKEN"}, b'{"event": "x"',
     400, b'{"text":"Invalid data format","code":6,"invalid-event-number":0}'),
    ("event of a bad type", "/services/collector/event", {"Authorization": "Splunk TOKEN"}, b'{"event": [1]}',
     400, b'{"text":"Invalid data format","code":6,"invalid-event-number":0}'),
    ("time past a float's range", "/services/collector/event", {"Authorization": "Splunk TOKEN"},
     b'{"event": "x", "time": 1' + b"0" * 400 + b'}',
     400, b'{"text":"Invalid data format","code":6,"invalid-event-number":0}'),
    ("missing event", "/services/collector/event", {"Authorization": "Splunk TOKEN"}, b'{"time": 1}',
     400, b'{"text":"Event field is required","code":12,"invalid-event-number":0}'),
    ("blank event", "/services/collector/event", {"Authorization": "Splunk TOKEN"}, b'{"event": ""}',
     400, b'{"text":"Event field cannot be blank","code":13,"invalid-event-number":0}'),
    ("valid token in the query string, disabled", "/services/collector/event?token=TOKEN", {}, b'{"event":"x"}',
     400, b'{"text":"Query string authorization is not enabled","code":16}'),
    ("unknown token in the query string", "/services/collector/event?token=nope", {}, b'{"event":"x"}',
     403, b'{"text":"Invalid token","code":4}'),
    ("ack query for a token without acks", "/services/collector/ack", {"Authorization": "Splunk TOKEN"},
     b'{"acks": [0]}', 400, b'{"text":"ACK is disabled","code":14}'),
    ("gzip that is not gzip", "/services/collector/event",
     {"Authorization": "Splunk TOKEN", "Content-Encoding": "gzip"}, b"plain",
     400, b'{"text":"Invalid data format","code":6,"invalid-event-number":0}'),
]


@pytest.mark.parametrize("case, path, headers, body, status, expected", TABLE, ids=[row[0] for row in TABLE])
@pytest_twisted.ensureDeferred
async def test_reply_table(inboxd: MemoryInbox, case: str, path: str, headers: dict[str, str], body: bytes,
                           status: int, expected: bytes) -> None:
    """Each refusal is Splunk's exact status and body, and nothing is published."""
    token = await hec_token(inboxd)
    headers = {k: v.replace("TOKEN", token) for k, v in headers.items()}
    got = await send(inboxd, path.replace("TOKEN", token), body, headers)
    assert got[:2] == (status, expected)
    assert got[2].headers.getRawHeaders("content-type") == ["application/json; charset=UTF-8"]
    assert inboxd.events() == []


@pytest_twisted.ensureDeferred
async def test_basic_auth_with_the_token_as_password(inboxd: MemoryInbox) -> None:
    """Basic auth with any user name and the token as password is accepted."""
    token = await hec_token(inboxd)
    credentials = base64.b64encode(f"x:{token}".encode()).decode()
    assert (await send(inboxd, "/services/collector/event", b'{"event":"x"}',
                       {"Authorization": f"Basic {credentials}"}))[:2] == (200, SUCCESS)
    assert len(inboxd.events()) == 1


@pytest_twisted.ensureDeferred
async def test_query_string_token_when_enabled() -> None:
    """With hec.allow_query_string_token on, ?token= authenticates, and the token never reaches the access log."""
    inbox = MemoryInbox(FakeStore(), hec=HecSettings(allow_query_string_token=True))
    seen: list[str] = []

    def observe(event: dict[str, Any]) -> None:
        seen.append(formatEvent(event) + repr(event))

    globalLogPublisher.addObserver(observe)
    try:
        token = await hec_token(inbox)
        assert (await send(inbox, f"/services/collector/raw?token={token}&host=h", b"line"))[:2] == (200, SUCCESS)
        await send(inbox, f"/services/collector/nope?token={token}")
        [event] = inbox.events()
        assert (event["message"], event["metadata"]["reporter"]["hostname"]) == ("line", "h")
    finally:
        globalLogPublisher.removeObserver(observe)
    assert any("hec 200 ok template=splunk-hec" in line for line in seen)
    assert any("/services/collector/nope?token=aisoc_inbox_<redacted> 404" in line for line in seen)
    assert not any(token in line for line in seen)


@pytest_twisted.ensureDeferred
async def test_signed_token_without_signature_is_invalid_authorization(inboxd: MemoryInbox) -> None:
    """A token minted with a signing secret refuses an unsigned HEC post with 401 code 3."""
    token = await hec_token(inboxd, secret=b"s3cret")
    assert (await send(inboxd, "/services/collector/event", b'{"event":"x"}', splunk(token)))[:2] == (
        401, b'{"text":"Invalid authorization","code":3}')
    assert metric(inboxd.metrics_text(), "invalid_signature") == 1


@pytest_twisted.ensureDeferred
async def test_token_whose_template_is_gone_is_token_disabled(inboxd: MemoryInbox) -> None:
    """A token bound to a template no longer allowed is 403 code 1 Token disabled."""
    token = mint_token()
    await inboxd.store.insert_token(TokenRecord(fingerprint(token), "tenant-a", "removed-template",
                                                       created_at=1.0))
    assert (await send(inboxd, "/services/collector/event", b'{"event":"x"}', splunk(token)))[:2] == (
        403, b'{"text":"Token disabled","code":1}')


@pytest_twisted.ensureDeferred
async def test_rate_limit_is_server_busy() -> None:
    """Over the tenant's rate limit a HEC client gets 503 code 9 with Retry-After, not a 429 it would not retry."""
    inbox = MemoryInbox(FakeStore(), http_settings=HttpSettings(rate_limit_per_min=1))
    token = await hec_token(inbox)
    assert (await send(inbox, "/services/collector/event", b'{"event":"x"}', splunk(token)))[0] == 200
    status, content, response = await send(inbox, "/services/collector/event", b'{"event":"y"}', splunk(token))
    assert (status, content) == (503, b'{"text":"Server is busy","code":9}')
    assert response.headers.getRawHeaders("retry-after")
    assert metric(inbox.metrics_text(), "rate_limited") == 1


@pytest_twisted.ensureDeferred
async def test_unwritable_sink_is_server_busy_and_unhealthy(inboxd: MemoryInbox) -> None:
    """When events cannot be made durable the post is 503 code 9 and health turns 503 code 18."""
    token = await hec_token(inboxd)
    inboxd.sink.failing = "EIO on write"
    assert (await send(inboxd, "/services/collector/event", b'{"event":"x"}', splunk(token)))[:2] == (
        503, b'{"text":"Server is busy","code":9}')
    assert (await send(inboxd, "/services/collector/health", method="GET"))[:2] == (
        503, b'{"text":"HEC is unhealthy, queues are full","code":18}')


@pytest_twisted.ensureDeferred
async def test_too_large_and_unknown_encoding_keep_their_statuses(inboxd: MemoryInbox) -> None:
    """A body over the limit is 413 (also once gunzipped) and an unknown Content-Encoding 415, as HEC clients expect."""
    token = await hec_token(inboxd)
    big = b'{"event": "' + b"x" * (70 * 1024) + b'"}'
    assert (await send(inboxd, "/services/collector/event", big, splunk(token)))[0] == 413
    assert (await send(inboxd, "/services/collector/event", gzip.compress(big),
                       {**splunk(token), "Content-Encoding": "gzip"}))[0] == 413
    assert (await send(inboxd, "/services/collector/event", b'{"event":"x"}',
                       {**splunk(token), "Content-Encoding": "br"}))[0] == 415
    assert inboxd.events() == []


# -- batches, gzip, raw ---------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_events_before_the_first_bad_one_are_accepted(inboxd: MemoryInbox) -> None:
    """As in Splunk, the envelopes before a bad one are published and the bad one's number is answered."""
    token = await hec_token(inboxd)
    body = b'{"event": "a"}\n{"event": "b"}\n{"time": 1}\n{"event": "c"}'
    assert (await send(inboxd, "/services/collector/event", body, splunk(token)))[:2] == (
        400, b'{"text":"Event field is required","code":12,"invalid-event-number":2}')
    assert [e["message"] for e in inboxd.events()] == ["a", "b"]


@pytest_twisted.ensureDeferred
async def test_gzip_batch(inboxd: MemoryInbox) -> None:
    """A gzip-encoded batch is accepted and every envelope published once."""
    token = await hec_token(inboxd)
    body = gzip.compress(b"".join(json.dumps({"event": f"e{i}"}).encode() for i in range(50)))
    assert (await send(inboxd, "/services/collector", body, {**splunk(token), "Content-Encoding": "gzip"}))[:2] == (
        200, SUCCESS)
    assert sorted(e["message"] for e in inboxd.events()) == sorted(f"e{i}" for i in range(50))


@pytest.mark.parametrize("path", ["/services/collector/raw", "/services/collector/raw/1.0"])
@pytest_twisted.ensureDeferred
async def test_raw_lines_with_query_metadata(inboxd: MemoryInbox, path: str) -> None:
    """The raw endpoint publishes one OCSF event per line with host, source and sourcetype from the query string."""
    token = await hec_token(inboxd)
    body = (Path(__file__).parent / "fixtures" / "hec" / "fluentbit-raw-access-log-lines.txt").read_bytes()
    query = "?host=web01&source=access.log&sourcetype=access_combined&index=web&channel=" + CHANNEL
    assert (await send(inboxd, path + query, body, splunk(token)))[:2] == (200, SUCCESS)
    events = inboxd.events()
    assert len(events) == 5
    for event in events:
        assert_valid_ocsf(event)
        assert (event["metadata"]["reporter"]["hostname"], event["metadata"]["source"],
                event["metadata"]["log_name"]) == ("web01", "access.log", "access_combined")
    assert events[0]["message"].startswith('127.0.0.1 - admin [28/Sep/2016:09:05:26.875 -0700] "GET /servicesNS')


@pytest_twisted.ensureDeferred
async def test_raw_cef_line_goes_through_the_cef_syslog_template(inboxd: MemoryInbox) -> None:
    """A CEF line on the raw endpoint arrives once as valid OCSF mapped by cef-syslog (device vendor and product), a plain line beside it by splunk-hec."""
    token = await hec_token(inboxd)
    line = "CEF:0|Security|threatmanager|1.0|100|worm successfully stopped|10|src=10.0.0.1 dst=2.1.2.2 spt=1232"
    body = f"{line}\nnot CEF at all\n".encode()
    assert (await send(inboxd, "/services/collector/raw?sourcetype=cef", body, splunk(token)))[:2] == (200, SUCCESS)
    events = {e["raw_data"]: e for e in inboxd.events()}
    assert sorted(events) == sorted([line, "not CEF at all"])
    for event in events.values():
        assert_valid_ocsf(event)
    product = events[line]["metadata"]["product"]
    assert (product["vendor_name"], product["name"]) == ("Security", "threatmanager")
    assert events[line]["metadata"]["log_name"] == "cef-syslog"
    assert events["not CEF at all"]["metadata"]["product"]["vendor_name"] == "Splunk"


@pytest_twisted.ensureDeferred
async def test_envelope_events_that_are_cef_lines_go_through_the_cef_syslog_template(inboxd: MemoryInbox) -> None:
    """On the event endpoint an event string that is a CEF line, bare or behind a syslog header, arrives once as the OCSF class of its kind (as on /raw); other envelopes stay splunk-hec Base Events."""
    token = await hec_token(inboxd)
    login = "CEF:0|Vendor|Product|1.0|100|User login failed|3|src=10.0.0.1 suser=alice cs1=mfa"
    firewall = ("<134>May  8 09:00:00 fw01 CEF:0|Acme|FW|2.1|deny|Connection denied|5|src=10.0.0.1 dst=10.1.0.1 "
                "dpt=443 act=deny")
    envelopes = [{"event": login, "host": "relay01", "time": 1778230800, "sourcetype": "cef"}, {"event": firewall},
                 {"event": "plain text"}, {"event": {"message": "an object", "severity": "high"}}]
    body = "\n".join(json.dumps(envelope) for envelope in envelopes).encode()
    assert (await send(inboxd, "/services/collector/event", body, splunk(token)))[:2] == (200, SUCCESS)
    events = inboxd.events()
    for event in events:
        assert_valid_ocsf(event)
    assert sorted(e["class_uid"] for e in events) == [0, 0, 3002, 4001]
    by_class = {e["class_uid"]: e for e in events}
    logon, traffic = by_class[3002], by_class[4001]
    assert (logon["user"]["name"], logon["metadata"]["log_name"], logon["metadata"]["log_source"]) == (
        "alice", "cef-syslog", "hec")
    assert (logon["metadata"]["reporter"]["hostname"], logon["time"]) == ("relay01", 1778230800000)
    assert logon["unmapped"]["hec"] == {"sourcetype": "cef"}
    assert json.loads(logon["raw_data"])["event"] == login
    assert (traffic["metadata"]["reporter"]["hostname"], traffic["dst_endpoint"]["port"], traffic["action_id"]) == (
        "fw01", 443, 2)
    texts = sorted((e for e in events if e["class_uid"] == 0), key=lambda e: e["message"])
    assert [(e["message"], e["metadata"]["log_name"]) for e in texts] == [("an object", "splunk-hec"),
                                                                          ("plain text", "splunk-hec")]
    assert texts[0]["severity_id"] == 4


# -- indexer acknowledgement ----------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_ack_token_needs_a_valid_channel(inboxd: MemoryInbox) -> None:
    """A token with acks refuses a post without a channel (400 code 10) or with a malformed one (400 code 11)."""
    token = await hec_token(inboxd, acks=True)
    assert (await send(inboxd, "/services/collector/event", b'{"event":"x"}', splunk(token)))[:2] == (
        400, b'{"text":"Data channel is missing","code":10}')
    assert (await send(inboxd, "/services/collector/event", b'{"event":"x"}',
                       {**splunk(token), "X-Splunk-Request-Channel": "not-a-guid"}))[:2] == (
        400, b'{"text":"Invalid data channel","code":11}')
    assert inboxd.events() == []


@pytest_twisted.ensureDeferred
async def test_ack_ids_and_ack_query(inboxd: MemoryInbox) -> None:
    """Posts on a channel get ackIds 0, 1, …; the ack query reads them true once, then false; channels are separate."""
    token = await hec_token(inboxd, acks=True)
    with_channel = {**splunk(token), "X-Splunk-Request-Channel": CHANNEL}
    assert (await send(inboxd, "/services/collector/event", b'{"event":"a"}', with_channel))[:2] == (
        200, b'{"text":"Success","code":0,"ackId":0}')
    assert (await send(inboxd, f"/services/collector/raw?channel={CHANNEL}", b"b", splunk(token)))[:2] == (
        200, b'{"text":"Success","code":0,"ackId":1}')
    query = json.dumps({"acks": [0, 1, 2]}).encode()
    assert (await send(inboxd, "/services/collector/ack", query, with_channel))[:2] == (
        200, b'{"acks":{"0":true,"1":true,"2":false}}')
    assert (await send(inboxd, f"/services/collector/ack?channel={CHANNEL}", query, splunk(token)))[:2] == (
        200, b'{"acks":{"0":false,"1":false,"2":false}}')
    other = {**splunk(token), "X-Splunk-Request-Channel": "11111111-2222-3333-4444-555555555555"}
    assert (await send(inboxd, "/services/collector/event", b'{"event":"c"}', other))[1] == (
        b'{"text":"Success","code":0,"ackId":0}')
    assert (await send(inboxd, "/services/collector/ack", b'{"acks": "0"}', with_channel))[:2] == (
        400, b'{"text":"Invalid data format","code":6}')
    assert (await send(inboxd, "/services/collector/ack", query, splunk(token)))[:2] == (
        400, b'{"text":"Data channel is missing","code":10}')
    assert len(inboxd.events()) == 3


def test_cli_mints_a_token_with_hec_acks(tmp_path: Path) -> None:
    """token mint --hec-acks stores the option (token list shows it), and rotation keeps it."""
    import subprocess
    import sys

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, AISOC_INBOX_STATE_DIR=str(tmp_path))
        return subprocess.run([sys.executable, "-m", "aisoc_inboxd.cli", *args], env=env, capture_output=True,
                              text=True, timeout=60, check=True)

    acked = json.loads(cli("token", "mint", "--tenant", "acme", "--template", "splunk-hec", "--hec-acks",
                           "--json").stdout)
    json.loads(cli("token", "mint", "--tenant", "acme", "--template", "splunk-hec", "--json").stdout)
    rotated = json.loads(cli("token", "rotate", "--tenant", "acme", acked["fingerprint"][:12], "--json").stdout)
    rows = {r["fingerprint"]: r for r in json.loads(cli("token", "list", "--tenant", "acme", "--json").stdout)}
    assert rows[rotated["fingerprint"]]["hec_acks"] is True
    assert sorted(r["hec_acks"] for r in rows.values()) == [False, True, True]
