"""
Connections that would otherwise never be cut, against the real daemon over real sockets: a request
head or body trickled a byte at a time (slowloris) is answered 408 and closed once its deadline
passes; a request line or header block past the size limit is answered 414 / 431, and a malformed
request 400, each with a JSON body, before the connection is closed; each is counted by reason.

The limits are configured small so each case takes about a second; the clients are raw TCP, so
nothing but the test decides what goes on the wire.
"""
from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from types import FrameType
from typing import Any, AsyncIterator

import pytest_twisted
import treq
from twisted.internet import interfaces as internet_interfaces, ssl
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol, wrapClientTLS
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock, LoopingCall, deferLater
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web.http import _getContentFile
from twisted.web import iweb, resource as twisted_resource
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementedBy, providedBy
from zope.interface.interface import InterfaceClass

from aisoc_inboxd.testing import FakeStore, MemoryInbox
from aisoc_inboxd.web.channel import ChannelLimits
from aisoc_inboxd.web.routes import JsonRoute
from aisoc_inboxd.web.site import InboxSite
from tests.support.daemon import RunningDaemon, daemon_settings, start_daemon
from tests.test_status_page import read
from tests.support.tls import make_tls_files

HEADER_TIMEOUT = 0.5
BODY_TIMEOUT = 0.5
MAX_HEADER_BYTES = 1024
#: how long a test waits for the daemon to close a connection before failing (a bound, not a measure)
GIVE_UP = 20.0


class RawClient(Protocol):
    """
    Writes what the test says, keeps every byte the server sends; C{closed} fires with them once
    the server ends the connection.
    """

    def __init__(self) -> None:
        self.received = b""
        self.closed: Deferred[bytes] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure) -> None:
        self.closed.callback(self.received)


@pytest_twisted.async_yield_fixture
async def inboxd(reactor: Any, tmp_path: Path) -> AsyncIterator[RunningDaemon]:
    settings = daemon_settings(tmp_path / "state", http={
        "header_timeout": HEADER_TIMEOUT, "body_timeout": BODY_TIMEOUT, "max_header_bytes": MAX_HEADER_BYTES})
    running = await start_daemon(reactor, settings)
    yield running
    await running.stop()


async def connect(inboxd: RunningDaemon) -> RawClient:
    port = inboxd.daemon.address("http").port
    return await connectProtocol(TCP4ClientEndpoint(inboxd.reactor, "127.0.0.1", port), RawClient())


async def until_closed(inboxd: RunningDaemon, client: RawClient) -> bytes:
    return await client.closed.addTimeout(GIVE_UP, inboxd.reactor)


async def trickle(inboxd: RunningDaemon, head: bytes, byte: bytes = b"x") -> bytes:
    """Send C{head}, then one byte every 0.1 s until the daemon closes the connection."""
    client = await connect(inboxd)
    client.transport.write(head)
    drip = LoopingCall(client.transport.write, byte)
    drip.clock = inboxd.reactor
    drip.start(0.1)
    try:
        return await until_closed(inboxd, client)
    finally:
        drip.stop()


async def send_all(inboxd: RunningDaemon, data: bytes) -> bytes:
    """Send C{data} at once and collect the reply until the daemon closes the connection."""
    client = await connect(inboxd)
    client.transport.write(data)
    return await until_closed(inboxd, client)


def parsed(reply: bytes) -> tuple[int, dict[str, str], Any]:
    """The status, the headers (lowercase names) and the JSON body of one HTTP/1.1 reply."""
    head, _, body = reply.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip()
               for name, _, value in (line.partition(":") for line in header_lines)}
    assert len(body) == int(headers["content-length"]), reply
    return int(status_line.split(" ")[1]), headers, json.loads(body)


async def closed_count(inboxd: RunningDaemon, reason: str) -> float:
    needle = f'aisoc_ingest_http_connections_closed_total{{reason="{reason}"}} '
    for line in (await inboxd.metrics()).splitlines():
        if line.startswith(needle):
            return float(line[len(needle):])
    return 0.0


async def assert_refused(inboxd: RunningDaemon, reply: bytes, status: int, reason: str, message: str) -> None:
    code, headers, body = parsed(reply)
    assert (code, headers["content-type"], headers["connection"]) == (status, "application/json", "close")
    assert message in body["error"], body
    assert await closed_count(inboxd, reason) == 1


@pytest_twisted.ensureDeferred
async def test_head_trickled_a_byte_at_a_time_is_408(inboxd: RunningDaemon) -> None:
    """Slowloris: each byte resets the idle timeout, but the head as a whole has a deadline."""
    reply = await trickle(inboxd, b"POST /v1/inbox/x HTTP/1.1\r\nHost: a\r\nX-Slow: ")
    await assert_refused(inboxd, reply, 408, "header_timeout",
                         f"request head not received within {HEADER_TIMEOUT:g} s (http.header_timeout)")


@pytest_twisted.ensureDeferred
async def test_request_line_trickled_is_408(inboxd: RunningDaemon) -> None:
    """The deadline starts with the first byte of a request, before any line is complete."""
    reply = await trickle(inboxd, b"P", b"O")
    await assert_refused(inboxd, reply, 408, "header_timeout", "http.header_timeout")


@pytest_twisted.ensureDeferred
async def test_body_trickled_a_byte_at_a_time_is_408(inboxd: RunningDaemon) -> None:
    token = await inboxd.mint()
    head = f"POST /v1/inbox/{token} HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n{{".encode()
    reply = await trickle(inboxd, head, b" ")
    await assert_refused(inboxd, reply, 408, "body_timeout",
                         f"request body not received within {BODY_TIMEOUT:g} s (http.body_timeout)")
    assert inboxd.events() == []


@pytest_twisted.ensureDeferred
async def test_chunked_body_trickled_is_408(inboxd: RunningDaemon) -> None:
    token = await inboxd.mint()
    head = f"POST /v1/inbox/{token} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    reply = await trickle(inboxd, head + b"1\r\n{\r\n", b"1\r\n \r\n")
    await assert_refused(inboxd, reply, 408, "body_timeout", "http.body_timeout")


@pytest_twisted.ensureDeferred
async def test_long_request_line_is_414(inboxd: RunningDaemon) -> None:
    """A 20 KB request line: 414 with a JSON body, not a silently dropped connection."""
    reply = await send_all(inboxd, b"POST /v1/inbox/" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: a\r\n\r\n")
    await assert_refused(inboxd, reply, 414, "request_line_too_long",
                         f"request line longer than {MAX_HEADER_BYTES} bytes (http.max_header_bytes)")


@pytest_twisted.ensureDeferred
async def test_endless_header_is_431_without_reading_it_all(inboxd: RunningDaemon) -> None:
    """One header line that never ends (the 1 GB header): 431 once the limit is passed, and the
    connection is closed rather than buffering the rest."""
    client = await connect(inboxd)
    client.transport.write(b"POST /v1/inbox/x HTTP/1.1\r\nHost: a\r\nX-Big: ")
    flood = LoopingCall(client.transport.write, b"b" * 65536)
    flood.clock = inboxd.reactor
    flood.start(0.01)
    try:
        reply = await until_closed(inboxd, client)
    finally:
        flood.stop()
    await assert_refused(inboxd, reply, 431, "headers_too_large",
                         f"request headers larger than {MAX_HEADER_BYTES} bytes (http.max_header_bytes)")


@pytest_twisted.ensureDeferred
async def test_many_small_headers_past_the_limit_are_431(inboxd: RunningDaemon) -> None:
    headers = b"".join(b"X-H%d: %s\r\n" % (n, b"v" * 30) for n in range(40))
    reply = await send_all(inboxd, b"GET /healthz HTTP/1.1\r\nHost: a\r\n" + headers + b"\r\n")
    await assert_refused(inboxd, reply, 431, "headers_too_large", "http.max_header_bytes")


@pytest_twisted.ensureDeferred
async def test_more_than_500_headers_are_431(inboxd: RunningDaemon) -> None:
    """twisted.web's header count limit, within the byte limit, is 431 too (it answered a bare 400)."""
    headers = b"".join(b"h:\r\n" for _ in range(501))
    reply = await send_all(inboxd, b"GET /healthz HTTP/1.1\r\n" + headers + b"\r\n")
    await assert_refused(inboxd, reply, 431, "too_many_headers", "more than 500 request headers")


@pytest_twisted.ensureDeferred
async def test_malformed_requests_are_400_with_a_json_body(inboxd: RunningDaemon) -> None:
    """What twisted.web answers with a bare 400 (a bad request line, a header without a colon, a bad
    Content-Length) gets the daemon's JSON body too."""
    for index, head in enumerate([b"NOT-HTTP\r\n\r\n", b"GET / HTTP/1.1\r\nNoColon\r\n\r\n",
                                  b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"], start=1):
        code, _, body = parsed(await send_all(inboxd, head))
        assert (code, body) == (400, {"error": "malformed HTTP request: the request line, a header or the "
                                               "body's framing (Content-Length, chunks) is not valid HTTP/1.1"})
        assert await closed_count(inboxd, "malformed_request") == index


@pytest_twisted.ensureDeferred
async def test_refusals_are_on_the_status_page(inboxd: RunningDaemon) -> None:
    """The status page shows every kind of refusal with its status and how many connections it
    closed: a long request line and two malformed requests over real sockets count 1 and 2, the
    other kinds 0."""
    await send_all(inboxd, b"POST /v1/inbox/" + b"a" * 2 * MAX_HEADER_BYTES + b" HTTP/1.1\r\nHost: a\r\n\r\n")
    for _ in range(2):
        await send_all(inboxd, b"NOT-HTTP\r\n\r\n")
    response = await treq.get(f"{inboxd.admin_url}/status", headers={"Authorization": [f"Bearer {inboxd.admin_key}"]})
    rows = read((await response.content()).decode("utf-8")).rows
    assert ["status | reason | connections closed", "408 | header_timeout | 0", "408 | body_timeout | 0",
            "414 | request_line_too_long | 1", "431 | headers_too_large | 0", "431 | too_many_headers | 0",
            "400 | malformed_request | 2"] == rows[rows.index("status | reason | connections closed"):][:7]


@pytest_twisted.ensureDeferred
async def test_keep_alive_connection_idle_between_requests_is_not_cut(inboxd: RunningDaemon) -> None:
    """The head deadline runs from a request's first byte: a kept-alive connection may sit idle
    (up to http.timeout) between requests for longer than http.header_timeout."""
    client = await connect(inboxd)
    client.transport.write(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
    await deferLater(inboxd.reactor, HEADER_TIMEOUT * 3, lambda: None)
    client.transport.write(b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    reply = await until_closed(inboxd, client)
    assert reply.count(b"HTTP/1.1 200 OK") == 2
    assert await closed_count(inboxd, "header_timeout") == 0


@pytest_twisted.ensureDeferred
async def test_ordinary_requests_still_work(inboxd: RunningDaemon) -> None:
    token = await inboxd.mint()
    status, body, _ = await inboxd.post(f"/v1/inbox/{token}", b'{"a": 1}', {"Content-Type": "application/json"})
    assert (status, body) == (200, {"accepted": 1, "template": "generic-json"})


@pytest_twisted.ensureDeferred
async def test_refusal_over_tls(reactor: Any, tmp_path: Path) -> None:
    """On a TLS listener the refusal is the same reply (TLS cannot half-close: the connection closes)."""
    tls = make_tls_files(tmp_path / "tls")
    settings = daemon_settings(tmp_path / "state", tls, http={"max_header_bytes": MAX_HEADER_BYTES})
    running = await start_daemon(reactor, settings, tls)
    try:
        endpoint = wrapClientTLS(
            ssl.optionsForClientTLS("localhost", trustRoot=ssl.Certificate.loadPEM(tls.ca_cert.read_bytes())),
            TCP4ClientEndpoint(reactor, "127.0.0.1", running.daemon.address("http").port))
        client = await connectProtocol(endpoint, RawClient())
        client.transport.write(b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\n\r\n")
        await assert_refused(running, await until_closed(running, client), 414, "request_line_too_long",
                             "http.max_header_bytes")
    finally:
        await running.stop()


# -- the deadlines on a clock ----------------------------------------------------------------

class Pending(Resource):
    """Answers nothing until the test says so (a route waiting for the sink)."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Request] = []

    def render_POST(self, request: Request) -> object:
        self.requests.append(request)
        return NOT_DONE_YET


def channel_on_a_clock(resource: Resource) -> tuple[Clock, Protocol, StringTransport, list[str]]:
    clock, refused = Clock(), []
    site = InboxSite(resource, max_body_bytes=1000, on_too_large=lambda path: None, reactor=clock,
                     limits=ChannelLimits(header_timeout=1.0, body_timeout=1.0, max_header_bytes=1024),
                     on_refused=refused.append)
    channel = site.buildProtocol(None)
    transport = StringTransport()
    channel.makeConnection(transport)
    return clock, channel, transport, refused


def test_the_head_deadline_is_for_the_whole_head() -> None:
    """Bytes every 0.3 s keep the idle timeout away, not the head's deadline (1 s after the first)."""
    clock, channel, transport, refused = channel_on_a_clock(Pending())
    for byte in b"POST / HT":
        channel.dataReceived(bytes([byte]))
        clock.advance(0.3)
        if refused:
            break
    assert refused == ["header_timeout"]
    assert transport.value().startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert transport.disconnecting


def test_a_slow_reply_is_not_a_slow_request() -> None:
    """Once the request is read whole no deadline runs: the route may take as long as it needs."""
    resource = Pending()
    clock, channel, transport, refused = channel_on_a_clock(resource)
    channel.dataReceived(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}")
    clock.advance(30)
    assert (refused, transport.value()) == ([], b"")
    [request] = resource.requests
    request.write(b"done")
    request.finish()
    assert transport.value().startswith(b"HTTP/1.1 200 OK\r\n")
    assert not transport.disconnecting


def test_the_idle_timeout_runs_from_the_last_read_or_the_last_reply() -> None:
    """http.timeout (60 s here) is cut short by neither a read nor a reply, counts from the later of
    them, and is paused while a request is being answered, however long that takes."""
    resource = Pending()
    clock, channel, transport, refused = channel_on_a_clock(resource)
    clock.advance(59)
    channel.dataReceived(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}")
    clock.advance(100)
    assert not transport.disconnecting
    resource.requests.pop().finish()
    clock.advance(59)
    channel.dataReceived(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}")
    resource.requests.pop().finish()
    clock.advance(59.9)
    assert not transport.disconnecting
    clock.advance(0.2)
    assert transport.disconnecting and refused == []


def test_an_idle_connection_is_timed_out_once_the_period_passes() -> None:
    """A connection that never sends a byte is cut http.timeout after it was made."""
    clock, channel, transport, refused = channel_on_a_clock(Pending())
    clock.advance(59.9)
    assert not transport.disconnecting
    clock.advance(0.2)
    assert transport.disconnecting


def test_requests_on_a_connection_make_no_new_timers() -> None:
    """A small request read whole and answered at once costs no timer: the connection's idle timer is
    the same one after each request (twisted.web cancels it and makes a new one per request)."""
    resource = Pending()
    clock, channel, transport, refused = channel_on_a_clock(resource)
    timers = [id(timer) for timer in clock.getDelayedCalls()]
    for _ in range(3):
        channel.dataReceived(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}")
        resource.requests.pop().finish()
        assert [id(timer) for timer in clock.getDelayedCalls()] == timers
    assert transport.value().count(b"HTTP/1.1 200 OK\r\n") == 3


def test_a_body_is_read_into_twisted_webs_choice_of_file_without_an_exception() -> None:
    """The site gives each request the file twisted.web would (memory below 100 kB, else a temporary
    file), so twisted.web's gotLength finds it rather than raising and catching an AttributeError per
    request to fall back to the same choice."""
    site = InboxSite(Pending(), max_body_bytes=10**6, on_too_large=lambda path: None, reactor=Clock(),
                     limits=ChannelLimits(header_timeout=1.0, body_timeout=1.0, max_header_bytes=1024),
                     on_refused=lambda reason: None)
    for length in (None, 0, 99_999, 100_000, 10**6):
        ours, twisteds = site.getContentFile(length), _getContentFile(length)
        assert type(ours) is type(twisteds)
        ours.close(), twisteds.close()
    raised: list[str] = []

    def trace(frame: FrameType, event: str, arg: object) -> Any:
        if event == "call":
            return trace if frame.f_code.co_name == "gotLength" else None
        if event == "exception":
            raised.append(arg[0].__name__)  # type: ignore[index]
        return trace
    resource = Pending()
    _, channel, _, _ = channel_on_a_clock(resource)
    sys.settrace(trace)
    try:
        channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
    finally:
        sys.settrace(None)
    [request] = resource.requests
    assert isinstance(request.content, io.BytesIO) and request.content.getvalue() == b"{}"
    assert raised == []


def _twisted_interfaces() -> list[InterfaceClass]:
    return [value for module in (iweb, twisted_resource, internet_interfaces) for value in vars(module).values()
            if isinstance(value, InterfaceClass)]


def test_routes_and_the_request_class_provide_what_they_did_from_a_declaration_of_their_own() -> None:
    """twisted.web asks per request whether the route provides C{_IEncodingResource} and whether the
    request class provides C{INonQueuedRequestFactory}; each answers from a declaration of its own
    (reading C{Resource}'s or C{Request}'s class-only one raises and clears an AttributeError), and
    provides exactly what zope.interface says without it, the reference: what its class implements,
    for a route; what C{type} implements, for the class."""
    inbox = MemoryInbox(FakeStore())
    site = inbox.http._agent._serverFactory  # type: ignore[attr-defined]
    routes, pending = [], [site.resource]
    while pending:
        resource = pending.pop()
        if isinstance(resource, JsonRoute):
            routes.append(resource)
        pending.extend(v for v in [*resource.children.values(), *vars(resource).values()] if isinstance(v, Resource))
    assert len({type(route) for route in routes}) >= 4
    interfaces = _twisted_interfaces()
    for provider_, reference in [(route, implementedBy(type(route))) for route in routes] + [
            (site.requestFactory, implementedBy(type))]:
        assert "__provides__" in vars(provider_)
        assert set(providedBy(provider_).interfaces()) == set(reference.interfaces())
        assert [i.providedBy(provider_) for i in interfaces] == [reference.isOrExtends(i) for i in interfaces]
