"""
POST /v1/inbox/cef in memory (the real resource tree over fakes, through StubTreq; see
L{aisoc_inboxd.testing}): the reply, malformed lines counted and never failing the batch, the
disabled route, the allowlist (with X-Forwarded-For from trusted proxies only), the shared secret,
gzip, and valid OCSF events.
"""
from __future__ import annotations

import gzip
import ipaddress

import pytest
import pytest_twisted

from aisoc_inboxd.config import CefSettings, HttpSettings
from aisoc_inboxd.testing import FakeStore, MemoryInbox
from aisoc_inboxd.web.cef import client_address
from tests.support.ocsf import assert_valid_ocsf
from tests.support.shared import FIXTURES
from tests.test_webhook_e2e import outcome_count

SPEC_LINE = b"CEF:0|Vendor|Product|1.0|100|User login failed|3|src=10.0.0.1 suser=alice cs1=mfa"


@pytest.fixture
def inboxd() -> MemoryInbox:
    return MemoryInbox(FakeStore(), cef=CefSettings(tenant="acme"))


@pytest_twisted.ensureDeferred
async def test_spec_line_is_accepted_durable_and_authentication(inboxd: MemoryInbox) -> None:
    """The spec's line answers 200 {"accepted": 1, "malformed": 0, "template": "cef-syslog"} and lands as 3002."""
    status, body, _ = await inboxd.post("/v1/inbox/cef", SPEC_LINE + b"\n", {"Content-Type": "text/plain"})
    assert (status, body) == (200, {"accepted": 1, "malformed": 0, "template": "cef-syslog"})
    (event,) = inboxd.events()
    assert_valid_ocsf(event)
    assert (event["class_uid"], event["user"]["name"], event["metadata"]["tenant_uid"]) == (3002, "alice", "acme")
    assert event["metadata"]["log_source"] == "cef"
    assert event["raw_data"] == SPEC_LINE.decode()


@pytest_twisted.ensureDeferred
async def test_malformed_lines_are_counted_and_the_rest_published(inboxd: MemoryInbox) -> None:
    """Each malformed line is one malformed increment; the good lines of the same batch are published."""
    body = b"\r\n".join([SPEC_LINE, b"not cef at all", b"", b"CEF:0|a|b", SPEC_LINE.replace(b"alice", b"bob"),
                         b"CEF:7|x|y|1|2|n|3|"])
    status, reply, _ = await inboxd.post("/v1/inbox/cef", body)
    assert (status, reply) == (200, {"accepted": 2, "malformed": 3, "template": "cef-syslog"})
    assert [e["user"]["name"] for e in inboxd.events()] == ["alice", "bob"]
    metrics = inboxd.metrics_text()
    assert outcome_count(metrics, "cef", "cef-syslog", "malformed") == 3
    assert outcome_count(metrics, "cef", "cef-syslog", "ok") == 1


@pytest_twisted.ensureDeferred
async def test_only_malformed_lines_is_still_200(inboxd: MemoryInbox) -> None:
    """A batch of nothing but malformed lines answers 200 with accepted 0 and publishes nothing."""
    status, reply, _ = await inboxd.post("/v1/inbox/cef", b"junk\nmore junk\n")
    assert (status, reply) == (200, {"accepted": 0, "malformed": 2, "template": "cef-syslog"})
    assert inboxd.events() == []


@pytest_twisted.ensureDeferred
async def test_corpus_over_gzip_is_valid_ocsf(inboxd: MemoryInbox) -> None:
    """The CEF fixtures posted gzip-compressed arrive once each as valid OCSF."""
    lines = b"\n".join(p.read_bytes().strip() for p in sorted((FIXTURES / "cef").glob("*-cases.txt")))
    status, reply, _ = await inboxd.post("/v1/inbox/cef", gzip.compress(lines), {"Content-Encoding": "gzip"})
    assert status == 200
    events = inboxd.events()
    assert reply["accepted"] == len(events) > 10
    for event in events:
        assert_valid_ocsf(event)


@pytest_twisted.ensureDeferred
async def test_get_is_405(inboxd: MemoryInbox) -> None:
    """The CEF route has no read surface."""
    status, body, _ = await inboxd.post("/v1/inbox/cef", b"", method="GET")
    assert status == 405 and "POST" in body["error"]


@pytest_twisted.ensureDeferred
async def test_disabled_without_a_tenant() -> None:
    """Without cef.tenant the route answers 404 saying how to enable it, and publishes nothing."""
    inbox = MemoryInbox(FakeStore(), cef=CefSettings())
    status, body, _ = await inbox.post("/v1/inbox/cef", SPEC_LINE)
    assert status == 404 and "cef.tenant" in body["error"]
    assert inbox.events() == []


@pytest_twisted.ensureDeferred
async def test_shared_secret() -> None:
    """With a shared secret a missing or wrong header is 401 and the right one is accepted."""
    inbox = MemoryInbox(FakeStore(), cef=CefSettings(tenant="acme", shared_secret_header="X-CEF-Secret",
                                                     shared_secret="s3cret"))
    assert (await inbox.post("/v1/inbox/cef", SPEC_LINE))[0] == 401
    status, body, _ = await inbox.post("/v1/inbox/cef", SPEC_LINE, {"X-CEF-Secret": "wrong"})
    assert status == 401 and "X-CEF-Secret" in body["error"] and "s3cret" not in body["error"]
    assert (await inbox.post("/v1/inbox/cef", SPEC_LINE, {"X-CEF-Secret": "s3cret"}))[0] == 200
    assert len(inbox.events()) == 1
    assert outcome_count(inbox.metrics_text(), "cef", "none", "invalid_secret") == 2


@pytest_twisted.ensureDeferred
async def test_allowlist_refuses_other_clients() -> None:
    """A client outside cef.allow_cidrs is 403, and an X-Forwarded-For from an untrusted peer is ignored."""
    inbox = MemoryInbox(FakeStore(), cef=CefSettings(tenant="acme", allow_cidrs=["10.1.0.0/16"]))
    status, body, _ = await inbox.post("/v1/inbox/cef", SPEC_LINE, {"X-Forwarded-For": "10.1.2.3"})
    assert status == 403 and "allow_cidrs" in body["error"]
    assert inbox.events() == []


@pytest_twisted.ensureDeferred
async def test_allowlist_honours_trusted_proxy() -> None:
    """Behind a trusted proxy, the X-Forwarded-For client decides: allowed inside the CIDR, 403 outside or without it."""
    inbox = MemoryInbox(FakeStore(), cef=CefSettings(tenant="acme", allow_cidrs=["10.1.0.0/16", "::1"],
                                                     trusted_proxies=["127.0.0.0/8"]))
    assert (await inbox.post("/v1/inbox/cef", SPEC_LINE, {"X-Forwarded-For": "10.1.2.3"}))[0] == 200
    assert (await inbox.post("/v1/inbox/cef", SPEC_LINE, {"X-Forwarded-For": "10.9.9.9"}))[0] == 403
    assert (await inbox.post("/v1/inbox/cef", SPEC_LINE))[0] == 403
    assert len(inbox.events()) == 1


@pytest_twisted.ensureDeferred
async def test_rate_limit_applies_to_the_configured_tenant() -> None:
    """Past cef.tenant's per-minute allowance a post is 429 with Retry-After, counted rate_limited, and publishes nothing."""
    inbox = MemoryInbox(FakeStore(), cef=CefSettings(tenant="acme"),
                        http_settings=HttpSettings(rate_limit_per_min=2))
    assert [(await inbox.post("/v1/inbox/cef", SPEC_LINE))[0] for _ in range(2)] == [200, 200]
    status, body, response = await inbox.post("/v1/inbox/cef", SPEC_LINE)
    assert status == 429 and body["error"].startswith("too many requests")
    assert int(response.headers.getRawHeaders("retry-after")[0]) >= 1
    assert len(inbox.events()) == 2
    assert outcome_count(inbox.metrics_text(), "cef", "cef-syslog", "rate_limited") == 1


TRUSTED = (ipaddress.ip_network("192.0.2.0/24"),)


@pytest.mark.parametrize(("peer", "forwarded", "client"), [
    ("198.51.100.7", ["10.0.0.1"], "198.51.100.7"),             # untrusted peer: its header is ignored
    ("192.0.2.1", ["10.0.0.1"], "10.0.0.1"),                    # trusted proxy: the client it names
    ("192.0.2.1", ["6.6.6.6, 10.0.0.1, 192.0.2.9"], "10.0.0.1"),  # right-most untrusted; spoofed left part ignored
    ("192.0.2.1", [], "192.0.2.1"),                             # a proxy without the header is the client
    ("192.0.2.1", ["garbage"], None),                           # unreadable: refuse
])
def test_client_address(peer: str, forwarded: list[str], client: str | None) -> None:
    """The client is the peer unless a trusted proxy forwarded it, read right to left past trusted proxies."""
    found = client_address(peer, forwarded, TRUSTED)
    assert (str(found) if found else None) == client
