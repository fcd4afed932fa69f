"""
The inbox listener's replies byte for byte: status line, every header in order, chunk framing and
body, for a set of requests covering each way a reply is made (a route's JSON, an idempotent replay,
a refusal, twisted.web's own 404, the channel's 413/400 before a route is reached, HTTP/1.0,
chunked and pipelined requests). The expected bytes in C{fixtures/raw_replies.json} were captured
from main before the per-request path was made leaner (branch perf-http), so a sender sees nothing
change; only the C{Date} header's value (the clock's) and the twisted.web version in C{Server} are
left out of the comparison.
The reply bodies a route keeps (L{json_reply}) are checked against their plain encoding too.

Refresh the fixture only for a change a sender is meant to see:
C{PYTHONPATH=. .venv/bin/python tests/test_raw_replies.py > tests/fixtures/raw_replies.json}.
"""
from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from aisoc_inboxd.config import HttpSettings
from aisoc_inboxd.testing import FakeStore, MemoryInbox
from aisoc_inboxd.tokens import fingerprint
from aisoc_inboxd.web.routes import encode_reply, json_reply
from tests.support.golden import assert_as_captured, print_capture

FIXTURE = Path(__file__).parent / "fixtures" / "raw_replies.json"
_DATE = re.compile(rb"\r\nDate: [^\r]*\r\n")
#: the version of twisted.web in the Server header, which an upgrade changes
_SERVER_VERSION = re.compile(rb"\r\nServer: TwistedWeb/[^\r]*\r\n")


def _post(path: str, body: bytes, *headers: str, version: str = "1.1") -> bytes:
    head = [f"POST {path} HTTP/{version}", "Host: inbox", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


async def raw_replies() -> dict[str, str]:
    """
    Each case's request, sent on a connection of its own to the listener's site; the bytes written
    back (Date's value and twisted.web's version blanked), as latin-1 text.
    """
    inbox = MemoryInbox(FakeStore(), http_settings=HttpSettings(max_body_bytes=4096))
    token = await inbox.mint()
    signed = await inbox.mint("signed", signing_secret=b"s3cret")
    hec = await inbox.mint("hec", "splunk-hec")
    inbox_path = f"/v1/inbox/{token}"
    event = b'{"id": "a1", "title": "disk full", "severity": "high"}'
    chunked = ("\r\n".join([f"POST {inbox_path} HTTP/1.1", "Host: inbox", "Transfer-Encoding: chunked", "", ""])
               .encode() + b"%x\r\n%s\r\n0\r\n\r\n" % (len(event), event))
    cases = {
        "single event": _post(inbox_path, event, "Content-Type: application/json"),
        "ndjson batch": _post(inbox_path, b"\n".join([event] * 3), "Content-Type: application/x-ndjson"),
        "gzip body": _post(inbox_path, gzip.compress(event), "Content-Encoding: gzip"),
        "idempotency key": _post(inbox_path, event, "X-AiSOC-Idempotency-Key: k1"),
        "idempotent replay": _post(inbox_path, event, "X-AiSOC-Idempotency-Key: k1"),
        "unknown token": _post("/v1/inbox/aisoc_inbox_" + "z" * 52, event),
        "missing signature": _post(f"/v1/inbox/{signed}", event),
        "bad json": _post(inbox_path, b'{"a": '),
        "unsupported type": _post(inbox_path, event, "Content-Type: image/png"),
        "method not allowed": f"GET {inbox_path} HTTP/1.1\r\nHost: inbox\r\n\r\n".encode(),
        "no such route": _post("/v1/nowhere", event),
        "health": b"GET /healthz HTTP/1.1\r\nHost: inbox\r\n\r\n",
        "declared too large": _post(inbox_path, b"{}" * 4096),
        "malformed request line": b"POST\r\n\r\n",
        "http/1.0": _post(inbox_path, event, version="1.0"),
        "connection close": _post(inbox_path, event, "Connection: close"),
        "chunked body": chunked,
        "pipelined pair": _post(inbox_path, event) + _post(inbox_path, event),
        "hec event": _post("/services/collector/event", b'{"event": "hello"}', f"Authorization: Splunk {hec}"),
        "hec bad token": _post("/services/collector/event", b'{"event": "hello"}', "Authorization: Splunk nope"),
    }
    site = inbox.http._agent._serverFactory  # the listener's own site (see aisoc_inboxd.testing.serving)
    replies = {}
    for name, request in cases.items():
        channel = site.buildProtocol(IPv4Address("TCP", "192.0.2.7", 40000))
        transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.7", 40000),
                                    hostAddress=IPv4Address("TCP", "127.0.0.1", 8080))
        channel.makeConnection(transport)
        channel.dataReceived(request)
        reply = _SERVER_VERSION.sub(b"\r\nServer: TwistedWeb/-\r\n", transport.value())
        replies[name] = _DATE.sub(b"\r\nDate: -\r\n", reply).decode("latin-1")
        channel.connectionLost(Failure(ConnectionDone()))
    return replies


@pytest_twisted.ensureDeferred
async def test_replies_are_the_same_bytes_as_before() -> None:
    """Every case's reply is byte for byte what main sent before the per-request path changed."""
    assert_as_captured(await raw_replies(), FIXTURE)


@pytest_twisted.ensureDeferred
async def test_a_client_gone_before_its_reply_gets_none_and_the_request_is_still_accounted() -> None:
    """The events of a request whose client left while they were made durable stay published; no
    reply is written to the lost connection, and its delivery record says none went out (a reply
    finished on a lost connection would raise instead)."""
    inbox = MemoryInbox(FakeStore())
    token = await inbox.mint()
    site = inbox.http._agent._serverFactory
    channel = site.buildProtocol(IPv4Address("TCP", "192.0.2.7", 40000))
    transport = StringTransport()
    channel.makeConnection(transport)
    inbox.sink.holding = True
    channel.dataReceived(_post(f"/v1/inbox/{token}", b'{"a": 1}'))
    channel.connectionLost(Failure(ConnectionDone()))
    inbox.sink.release(0)
    assert transport.value() == b"" and len(inbox.events()) == 1
    assert inbox.requests("webhook", "generic-json", "ok") == 1
    [delivery] = inbox.deliveries.of(fingerprint(token), "acme")
    assert (delivery.status, delivery.events, delivery.response_body) == (200, 1, "")


values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                      lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
                      max_leaves=6)


@settings(max_examples=1000)
@given(st.lists(st.dictionaries(st.sampled_from(["accepted", "template", "error", "code", "text"]), values,
                                max_size=3), min_size=1, max_size=4))
def test_kept_reply_bodies_encode_as_the_plain_encoding(bodies: list[dict[str, object]]) -> None:
    """A body answered before (equal keys and values: C{1}, C{1.0} and C{True} alike, C{0.0} and
    C{-0.0}) or not, hashable or not, is the bytes C{json.dumps} makes of it."""
    for body in bodies * 2:
        assert json_reply(body) == encode_reply(body)


def test_equal_values_of_other_types_are_kept_apart() -> None:
    """C{1 == 1.0 == True} and C{0.0 == -0.0}, but each is answered as itself."""
    assert [json_reply({"accepted": v}) for v in (1, 1.0, True, 0.0, -0.0)] == [
        b'{"accepted": 1}\n', b'{"accepted": 1.0}\n', b'{"accepted": true}\n', b'{"accepted": 0.0}\n',
        b'{"accepted": -0.0}\n']


if __name__ == "__main__":
    print_capture(raw_replies)
