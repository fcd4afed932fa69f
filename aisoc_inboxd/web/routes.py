"""
The base of every inbox route: a coroutine per request, tracked for shutdown, whose outcome becomes
exactly one response (JSON), one metric increment and nothing else.
"""
from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import directlyProvides

from aisoc_inboxd.coroutines import drive
from aisoc_inboxd.formats.json_body import Record
from aisoc_inboxd.inflight import InFlight
from aisoc_inboxd.intake.intake import Binding
from aisoc_inboxd.intake.refusals import Refused
from aisoc_inboxd.logs import RequestLogger
from aisoc_inboxd.tokens import log_id
from aisoc_inboxd.metrics import Metrics
from aisoc_inboxd.store import TokenRecord
from aisoc_inboxd.web.body import client_left
from aisoc_inboxd.web.clients import ClientAddresses
from aisoc_inboxd.web.errors import http_headers, http_status


@dataclass
class Reply:
    status: int
    body: dict[str, Any]
    template: str | None
    outcome: str = "ok"
    headers: dict[str, str] = field(default_factory=dict)


#: told of every reply a route sends: the route, the token the request presented once it was
#: authorized (else C{None}), the outcome, the status and the error message (C{None} for none);
#: must not raise (push stats, the status page's errors)
OnReply = Callable[[str, TokenRecord | None, str, int, str | None], None]


@dataclass
class Exchange:
    """
    One request's own state while a route serves it: a route is built once and serves many requests
    at a time, so what one request learns travels here, never on the route.
    """

    #: what the request was allowed to do, once its token (or config) bound it
    binding: Binding | None = None
    #: the token the request presented once it resolved (also when it was then refused: 400 unknown
    #: template, 429), for push stats and the log line
    token: TokenRecord | None = None
    #: events this request made durable (replays and refusals: none)
    published: int = 0
    #: for its delivery record: when it arrived, its body as the sender meant it (gzip undone, else
    #: as received), the records decoded from it and its headers by lowercase name
    received_at: float | None = None
    body: bytes | None = None
    records: Sequence[Record] = ()
    headers: dict[str, str] = field(default_factory=dict)

    def bound(self, binding: Binding) -> Binding:
        """
        Record what the request was allowed to do (for push stats and the log line).
        """
        self.binding, self.token = binding, binding.token
        return binding

    def count_published(self, events: int) -> int:
        self.published += events
        return events


def write_json(request: Request, status: int, body: dict[str, Any],
               headers: dict[str, str] | None = None) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json")
    for name, value in (headers or {}).items():
        request.setHeader(name.encode("latin-1"), value.encode("latin-1"))
    return json_reply(body)


def json_reply(body: dict[str, Any]) -> bytes:
    """
    C{body} as a reply's bytes (C{json.dumps} and a newline), encoded once for each body a route
    keeps answering (a token's C{{"accepted": 1, "template": …}}) rather than per request.
    """
    try:
        # each value's type is part of the key: 1 and True are equal but encode differently
        return _encoded_reply(tuple((key, _KEPT_TYPES[type(value)], value) for key, value in body.items()))
    except KeyError:  # a float (0.0 == -0.0), a list or a dict among the values: encoded each time
        return encode_reply(body)


#: the types of the values a kept reply body may hold: those whose equal values encode alike
_KEPT_TYPES = {str: str, int: int, bool: bool, type(None): None}


def encode_reply(body: dict[str, Any]) -> bytes:
    """
    The plain encoding of a reply body, which L{json_reply} keeps.
    """
    return json.dumps(body).encode("utf-8") + b"\n"


@functools.lru_cache(maxsize=256)
def _encoded_reply(items: tuple[tuple[str, type, Any], ...]) -> bytes:
    return encode_reply({key: value for key, _, value in items})


class DeliveryRecording(Protocol):
    """
    Keeps a served request as a recent delivery (L{aisoc_inboxd.web.recorder.DeliveryRecorder}).
    """

    def record(self, route: str, request: Request, exchange: Exchange, reply: Reply, response_body: bytes,
               duration: float, client: str | None, secret_headers: Sequence[str] = ()) -> None: ...


class JsonRoute(Resource):
    """
    Subclasses set C{route} and C{methods} and implement C{handle}; any other method is 405 (there
    is no read surface on the inbox), errors become JSON bodies. Built once at start: a request's
    state is its L{Exchange}.
    """

    isLeaf = True
    route = "unknown"
    methods: frozenset[bytes] = frozenset({b"POST"})
    _log = RequestLogger()

    def __init__(self, metrics: Metrics, inflight: InFlight, observers: Sequence[OnReply] = (),
                 clients: ClientAddresses = ClientAddresses(), deliveries: DeliveryRecording | None = None) -> None:
        """
        @param clients: tells where a request comes from (the peer, or behind a trusted proxy the
            client it forwarded).
        @param deliveries: keeps each request as a recent delivery, after its reply is written.
        """
        super().__init__()
        self._metrics = metrics
        self._inflight = inflight
        self._observers = observers
        self._clients = clients
        self._recorder = deliveries
        #: bound once: a L{Logger} read from the class makes a new one for its instance every time
        self._request_log = self._log
        # what it provides is what its class implements, as without this; declared on the instance
        # because twisted.web asks (C{_IEncodingResource.providedBy}) on every request, and without
        # a declaration of its own zope.interface reads C{Resource}'s class-only one, which raises
        # and clears an AttributeError each time
        directlyProvides(self)

    def client_of(self, request: Request) -> str | None:
        """
        The address the request came from, for the request's log line and the unknown-token budget.
        """
        return self._clients.of(request)

    async def handle(self, request: Request, exchange: Exchange) -> Reply:
        raise NotImplementedError

    def render(self, request: Request) -> object:
        if request.method not in self.methods:
            allow = ", ".join(sorted(m.decode("ascii") for m in self.methods))
            self._metrics.request(self.route, None, "method_not_allowed")
            return write_json(request, 405, {"error": f"method {request.method.decode('latin-1')} not allowed; "
                                                      f"this route accepts {allow}"}, {"Allow": allow})
        started = time.monotonic()
        exchange = Exchange()
        self._inflight.started()
        drive(self.handle(request, exchange), self._answer, request, exchange, started)
        return NOT_DONE_YET

    def _answer(self, outcome: Reply | Failure, request: Request, exchange: Exchange, started: float) -> None:
        """
        The end of L{handle}'s coroutine: no longer in flight, then its reply (or the failure's) sent.
        """
        self._inflight.ended()
        try:
            self._send(self._failure_reply(outcome, exchange) if isinstance(outcome, Failure) else outcome,
                       request, exchange, started)
        except Exception:
            self._log.failure("unexpected error answering on route {route}", route=self.route)

    def _failure_reply(self, failure: Failure, exchange: Exchange) -> Reply:
        if failure.check(Refused):
            refused: Refused = failure.value
            exchange.token = exchange.token or refused.token
            return self.refusal_reply(refused)
        self._log.failure("unexpected error on route {route}", failure=failure, route=self.route)
        return Reply(500, {"error": "internal error; the request was not accepted"}, None, "error")

    def refusal_reply(self, refused: Refused) -> Reply:
        """
        The reply to a refusal: its status by L{http_status}, its message as C{{"error": …}}.
        """
        return Reply(http_status(refused), {"error": refused.message}, refused.template, refused.outcome,
                     http_headers(refused))

    def write_reply(self, request: Request, reply: Reply) -> bytes:
        """
        Set the status and headers of C{reply} on C{request} and return its body bytes.
        """
        return write_json(request, reply.status, reply.body, reply.headers)

    def _send(self, reply: Reply, request: Request, exchange: Exchange, started: float) -> None:
        self._metrics.request(self.route, reply.template, reply.outcome)
        client = self.client_of(request)
        self._log_request(request, exchange, reply, time.monotonic() - started, client)
        for observe in self._observers:
            observe(self.route, exchange.token, reply.outcome, reply.status, reply.body.get("error"))
        body = b""  # a client gone before its reply gets none
        # read before the reply: finishing a request drops its channel as the client leaving does
        gone = not request.finished and client_left(request)
        if self._recorder is not None:
            self._recorder.hold_body(request, exchange, gone)
        if not (request.finished or gone):
            body = self.write_reply(request, reply)
            request.write(body)
            request.finish()
        if self._recorder is not None:
            self._recorder.record(self.route, request, exchange, reply, body, time.monotonic() - started,
                                  client, self.secret_headers(), client_gone=gone)

    def secret_headers(self) -> Sequence[str]:
        """
        Names of the request headers that carry this route's own secrets, beyond those every
        delivery record redacts (the CEF route's shared-secret header).
        """
        return ()

    def _log_request(self, request: Request, exchange: Exchange, reply: Reply, duration: float,
                     client: str | None) -> None:
        """
        The request's one log line: who (tenant, token fingerprint prefix, C{client}: L{client_of}),
        what, and how it ended; never the token, a secret or the body.
        """
        binding, token = exchange.binding, exchange.token
        tenant = binding.tenant_id if binding else token.tenant_id if token else "-"
        request.route_logged = True  # type: ignore[attr-defined]
        self._request_log.line(
            "{route} {status} {outcome} template={template} tenant={tenant} token={token} "
            "events={events} bytes={bytes} duration_ms={duration_ms}",
            route=self.route, status=reply.status, outcome=reply.outcome, template=reply.template or "-",
            tenant=tenant, token=log_id(token.fingerprint) if token else "-",
            events=exchange.published, bytes=getattr(request, "received_bytes", 0),
            duration_ms=round(duration * 1000, 1),
            client=client or "-")

