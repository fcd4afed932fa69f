"""
Turning a served inbox request into a L{Delivery} of the L{DeliveryLog}, once its reply was written
to the connection: the route, the redacted headers, the body prefix, the reply, and the first OCSF
event the body became (rendered again from the first decoded record, so the publish path carries
nothing extra; its C{metadata.uid} is therefore not the published event's). A first record that
fits in C{deliveries.body_bytes} is rendered only when the delivery is read (L{FirstEvent}).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.server import Request

from aisoc_inboxd.deliveries import Delivery, DeliveryLog, FirstEvent, redact_headers, redacted_header_pairs
from aisoc_inboxd.fastjson import dumps_compact
from aisoc_inboxd.normalizer import IngestContext, Template, normalize_record
from aisoc_inboxd.web.body import decode_content, raw_body
from aisoc_inboxd.web.errors import HttpError

if TYPE_CHECKING:
    from aisoc_inboxd.web.routes import Exchange, Reply

#: the key of the token-less CEF route's ring
CEF_KEY = "cef"
#: what a first record held for rendering later is counted as, per byte of its text: the parsed
#: record while it waits, then the event (which carries the text as C{raw_data}, and the mapped
#: and unmapped fields beside it)
PENDING_BYTES_PER_RAW_BYTE = 4
#: the secret header names of a route without any of its own
_NO_NAMES: frozenset[str] = frozenset()


class DeliveryRecorder:
    _log = Logger()

    def __init__(self, log: DeliveryLog, clock: IReactorTime) -> None:
        self.log = log
        self._clock = clock

    def record(self, route: str, request: Request, exchange: Exchange, reply: Reply, response_body: bytes,
               duration: float, client: str | None, secret_headers: Iterable[str], client_gone: bool) -> None:
        """
        Keep what C{request} sent and got back, under its token's fingerprint (or L{CEF_KEY});
        nothing for a request that presented no token that resolved. C{client_gone}: its client
        left before the reply (read before the reply ended the request, which drops its channel).
        """
        key = self._key(route, exchange)
        if key is None:
            return
        secret_names = frozenset(name.lower() for name in secret_headers) if secret_headers else _NO_NAMES
        self._kept(key, route, request.method.decode("latin-1"),
                   redacted_header_pairs(request.requestHeaders.getAllRawHeaders(), secret_names),
                   redacted_header_pairs(request.responseHeaders.getAllRawHeaders()), exchange, reply,
                   response_body, duration, client, body_lost=client_gone and exchange.body is None)

    def hold_body(self, request: Request, exchange: Exchange, client_gone: bool) -> None:
        """
        Before the reply ends C{request} (and twisted.web drops its body): the body of a request
        refused before its route read it (its token's template is gone, its tenant is over the rate
        limit), so it is kept like any other, what the user needs to redeliver it once mended. Not
        once its client left: the body was lost with the connection, and the record says so.
        """
        if (exchange.body is None and exchange.token is not None and request.content is not None
                and not client_gone):
            raw = raw_body(request)
            try:
                exchange.body = decode_content(request, raw, request.channel.site.max_body_bytes)
            except HttpError:  # gzip that does not inflate: kept as received
                exchange.body = raw

    def keep(self, route: str, method: str, request_headers: list[tuple[str, str]],
             response_headers: list[tuple[str, str]], exchange: Exchange, reply: Reply, response_body: bytes,
             duration: float, client: str | None, secret_headers: Iterable[str] = ()) -> Delivery | None:
        """
        L{record} of a delivery made without a request of its own (a redelivery); the record kept,
        if any. Never raises: a record must not cost the daemon anything but memory.
        """
        key = self._key(route, exchange)
        if key is None:
            return None
        return self._kept(key, route, method,
                          redact_headers(request_headers, (name.lower() for name in secret_headers)),
                          redact_headers(response_headers), exchange, reply, response_body, duration, client)

    def _kept(self, key: str, route: str, method: str, request_headers: list[tuple[str, str]],
              response_headers: list[tuple[str, str]], exchange: Exchange, reply: Reply, response_body: bytes,
              duration: float, client: str | None, body_lost: bool = False) -> Delivery | None:
        """
        L{keep} under C{key} (L{_key}, not C{None}) of headers already redacted; C{body_lost}: its
        client left before the body was read (L{hold_body}).
        """
        binding, token = exchange.binding, exchange.token
        tenant = binding.tenant_id if binding else token.tenant_id if token else None
        try:
            keep = self.log.keeps_body(tenant) and exchange.body is not None
            limit = self.log.settings.body_bytes
            body = exchange.body[:limit] if keep and exchange.body is not None else None
            first_event = self._first_event(exchange, route, limit) if keep else None
            error = reply.body.get("error", reply.body.get("text")) if reply.status >= 400 else None
            delivery = Delivery(
                key=key, number=self.log.next_number(key), tenant_id=tenant,
                received_at=self._clock.seconds() if exchange.received_at is None else exchange.received_at,
                client=client, route=route, method=method, status=reply.status,
                outcome=reply.outcome, template=reply.template, events=exchange.published,
                error=str(error) if error is not None else None, duration_ms=round(duration * 1000, 1),
                request_headers=request_headers, response_headers=response_headers,
                response_body=response_body.decode("utf-8", "replace"),
                body=body, body_size=len(exchange.body or b""), first_event=first_event, body_lost=body_lost)
            self.log.add(delivery)
            return delivery
        except Exception:
            self._log.failure("could not record a delivery of route {route}", route=route)
            return None

    def _key(self, route: str, exchange: Exchange) -> str | None:
        """
        The ring a delivery of C{route} is kept in: its token's fingerprint, L{CEF_KEY} once the CEF
        route let the client in (bound it to the CEF tenant), or none (no token resolved, a CEF
        client refused, or no delivery is kept: C{deliveries.per_token} is 0).
        """
        if self.log.settings.per_token == 0:
            return None
        if exchange.token is not None:
            return exchange.token.fingerprint
        return CEF_KEY if route == "cef" and exchange.binding is not None else None

    @staticmethod
    def _first_event(exchange: Exchange, route: str, limit: int) -> FirstEvent | None:
        """
        The first OCSF event of the request's first record: rendered when the delivery is read if
        the record's text fits in C{limit}, else now (a large record is not held).
        """
        binding = exchange.binding
        if binding is None or not exchange.records:
            return None
        first, template, tenant, received_at, headers = (exchange.records[0], binding.template, binding.tenant_id,
                                                         exchange.received_at or 0.0, exchange.headers)

        def render() -> tuple[str | None, str | None]:
            context = IngestContext(tenant_id=tenant, route=route, received_at=received_at, raw=first.raw,
                                    headers=headers)
            return first_event_text(template, first.data, context, limit)
        if len(first.raw) <= limit:
            return FirstEvent(render, PENDING_BYTES_PER_RAW_BYTE * len(first.raw))
        return FirstEvent.rendered(*render())


def first_event_text(template: Template, data: dict[str, Any], context: IngestContext,
                     limit: int) -> tuple[str | None, str | None]:
    """
    The first OCSF event C{template} makes of C{data}, as JSON text, or why there is none.
    """
    try:
        events = normalize_record(template, data, context)
    except Exception as e:  # a template that cannot map the record: show why, as the publish did
        return None, f"{type(e).__name__}: {e}"
    if not events:
        return None, "the first record became no event (a control message the template acknowledges)"
    text = dumps_compact(events[0])
    if len(text) > 4 * limit + 4096:
        return None, f"the first event is {len(text)} bytes, more than a delivery record keeps"
    return text, None
