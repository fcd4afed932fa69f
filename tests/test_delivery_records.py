"""
What a recent delivery shows, pinned: the admin API's listing (what C{token deliveries} and
C{templates render --delivery} read) and the status page's deliveries section, for a set of
requests covering each way a delivery is recorded (accepted, batch, gzip, bad body, signature
refused, idempotent replay, HEC, CEF with its shared-secret header, credentials and token-shaped
values in headers, a body over C{deliveries.body_bytes} whose first event is rendered at once, a
redelivery). The expected text in C{fixtures/delivery_records.json} was captured from main before
recording was made lazier (branch perf-deliveries), so nobody reading a delivery sees a change; only
what the clock and chance set (durations, C{Date}, event uids, the status page's form token) is
blanked.

Refresh the fixture only for a change a reader is meant to see:
C{PYTHONPATH=. .venv/bin/python tests/test_delivery_records.py > tests/fixtures/delivery_records.json}.
"""
from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web.template import flattenString

from aisoc_inboxd.config import CefSettings, DeliverySettings
from aisoc_inboxd.testing import FakeStore, MemoryInbox
from aisoc_inboxd.tokens import fingerprint
from aisoc_inboxd.web.status_deliveries import deliveries_section
from tests.support.golden import assert_as_captured, print_capture

FIXTURE = Path(__file__).parent / "fixtures" / "delivery_records.json"
#: what the clock and uuid4 set, blanked in the listing's JSON and the page's HTML alike
_VARYING = [(re.compile(r'("duration_ms": )[0-9.]+'), r"\g<1>0"),
            (re.compile(r"\(([a-z_]+), [0-9.]+ ms\)"), r"(\1, - ms)"),
            (re.compile(r"[A-Z][a-z]{2}, [0-9]{2} [A-Z][a-z]{2} [0-9]{4} [0-9:]{8} GMT"), "-date-"),
            (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "-uuid-")]
EVENT = b'{"id": "a1", "title": "disk full", "severity": "high"}'


def _post(path: str, body: bytes, *headers: str) -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: inbox", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def _blanked(text: str) -> str:
    for pattern, replacement in _VARYING:
        text = pattern.sub(replacement, text)
    return text


async def recorded() -> dict[str, Any]:
    """
    Each case's request sent to the listener's own site, then every kept delivery as the admin API
    lists it and as the status page shows it.
    """
    inbox = MemoryInbox(FakeStore(), cef=CefSettings(tenant="acme", shared_secret_header="X-Cef-Pass",
                                                     shared_secret="cef-shared-secret-value"),
                        deliveries_settings=DeliverySettings(body_bytes=256))
    token = await inbox.mint()
    signed = await inbox.mint("acme", signing_secret=b"s3cret")
    hec = await inbox.mint("acme", "splunk-hec")
    inbox_path = f"/v1/inbox/{token}"
    big = json.dumps({"id": "big", "title": "x" * 400}).encode()
    cases = [
        _post(inbox_path, EVENT, "Content-Type: application/json", "X-Vendor-Event: alert", "User-Agent: hooks/1"),
        _post(inbox_path, b"\n".join([EVENT] * 3), "Content-Type: application/x-ndjson"),
        _post(inbox_path, gzip.compress(EVENT), "Content-Encoding: gzip"),
        _post(inbox_path, b'{"a": ', "Content-Type: application/json"),
        _post(inbox_path, b"\xff\xfe not utf-8", "Content-Type: text/plain"),
        _post(inbox_path, big, "Content-Type: application/json"),
        _post(inbox_path, EVENT, "X-AiSOC-Idempotency-Key: k1"),
        _post(inbox_path, EVENT, "X-AiSOC-Idempotency-Key: k1"),
        _post(inbox_path, EVENT, "Authorization: Bearer hunter2", "Cookie: s=1", "X-Api-Key: k",
              f"Referer: https://inbox/v1/inbox/{token}", "X-Hub-Signature-256: sha256=00", "X-Note: caf\xe9"),
        _post(f"/v1/inbox/{signed}", EVENT),
        _post("/services/collector/event", b'{"event": "hello"}', f"Authorization: Splunk {hec}"),
        _post("/v1/inbox/cef", b"CEF:0|Acme|IDS|1.0|100|Port scan|5|src=10.0.0.1\nnot cef\n",
              "X-Cef-Pass: cef-shared-secret-value"),
    ]
    site = inbox.http._agent._serverFactory  # the listener's own site (see aisoc_inboxd.testing.serving)
    for request in cases:
        channel = site.buildProtocol(IPv4Address("TCP", "192.0.2.7", 40000))
        channel.makeConnection(StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.7", 40000),
                                               hostAddress=IPv4Address("TCP", "127.0.0.1", 8080)))
        channel.dataReceived(request)
        channel.connectionLost(Failure(ConnectionDone()))
    status, _, _ = await inbox.call_admin(
        "POST", f"/v1/admin/tenants/acme/tokens/{fingerprint(token)}/deliveries/1/redeliver", {})
    assert status == 200
    tokens = {"webhook": fingerprint(token), "signed": fingerprint(signed), "hec": fingerprint(hec)}
    shown: dict[str, Any] = {}
    for name, path in [*((name, f"tokens/{key}") for name, key in tokens.items()), ("cef", "cef")]:
        status, listing, _ = await inbox.call_admin("GET", f"/v1/admin/tenants/acme/{path}/deliveries")
        assert status == 200 and listing["deliveries"], listing
        page = (await flattenString(None, deliveries_section(listing, "form-token"))).decode("utf-8")
        listed = json.dumps(listing, indent=1, sort_keys=True)
        for label, key in tokens.items():  # minted at random: named instead
            listed, page = (re.sub(key[:8] + "[0-9a-f]*", f"<{label}>", text) for text in (listed, page))
        shown[name] = {"listing": _blanked(listed).splitlines(), "page": _blanked(page).split("<details")}
    return shown


@pytest_twisted.ensureDeferred
async def test_deliveries_show_what_they_showed_before() -> None:
    """Every kept delivery lists (admin API, CLI) and shows (status page) exactly as on main."""
    assert_as_captured(await recorded(), FIXTURE)


if __name__ == "__main__":
    print_capture(recorded)
