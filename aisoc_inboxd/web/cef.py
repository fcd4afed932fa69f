"""
C{POST /v1/inbox/cef}: newline-delimited CEF lines from forwarders that cannot put a token in a path.

Token-less by design, so the daemon itself guards it, in this order: the route is served only when
C{cef.tenant} is configured (else 404, saying so); the client address must be in C{cef.allow_cidrs}
when that is set (403), where the client is the peer, or — only when the peer is one of
C{cef.trusted_proxies} — the right-most C{X-Forwarded-For} address that is not itself a trusted
proxy; the C{cef.shared_secret_header} must carry C{cef.shared_secret} when one is set (401,
compared in constant time); each request then takes one from C{cef.tenant}'s rate limit, as token
requests do from theirs (429 with C{Retry-After}, outcome C{rate_limited}). Then the body (gzip
allowed, size-limited like every route) is parsed line by line: each malformed line is dropped and
counted in C{aisoc_ingest_inbox_requests_total{route="cef", outcome="malformed"}}, never failing
the batch, and the rest is published. The reply, once the events are durable:
C{200 {"accepted": N, "malformed": M, "template": "cef-syslog"}}.
"""
from __future__ import annotations

import hmac
from typing import Sequence

from twisted.web.server import Request

from aisoc_inboxd.config import CefSettings, HttpSettings
from aisoc_inboxd.formats.cef import cef_lines
from aisoc_inboxd.formats.cef_records import split_cef_lines
from aisoc_inboxd.formats.json_body import TooManyEvents, within_event_limit
from aisoc_inboxd.inflight import InFlight
from aisoc_inboxd.intake.intake import Intake
from aisoc_inboxd.intake.refusals import Refused
from aisoc_inboxd.metrics import Metrics
from aisoc_inboxd.web.body import decode_content, raw_body
from aisoc_inboxd.web.clients import ClientAddresses, client_address, forwarded_for, inside, networks, peer_host
from aisoc_inboxd.web.errors import HttpError, too_many_events
from aisoc_inboxd.reload import Replaceable
from aisoc_inboxd.web.recorder import DeliveryRecorder
from aisoc_inboxd.web.routes import Exchange, JsonRoute, OnReply, Reply


class CefRoute(JsonRoute):
    route = "cef"

    def __init__(self, settings: Replaceable[CefSettings], intake: Intake, metrics: Metrics, inflight: InFlight,
                 max_body_bytes: int, observers: Sequence[OnReply] = (),
                 max_events: int = HttpSettings.max_events_per_request,
                 clients: ClientAddresses = ClientAddresses(),
                 deliveries: DeliveryRecorder | None = None) -> None:
        """
        @param settings: read at each request: a reload replaces them.
        @param max_events: the most lines one request may carry (C{http.max_events_per_request}),
            malformed ones included; a body with more is refused before any line is parsed.
        """
        super().__init__(metrics, inflight, observers, clients, deliveries)
        self._settings = settings
        self._intake = intake
        self._max_body_bytes = max_body_bytes
        self._max_events = max_events

    async def handle(self, request: Request, exchange: Exchange) -> Reply:
        received_at = exchange.received_at = self._intake.now()
        settings = self._settings.value
        if settings.tenant is None:
            raise HttpError(404, "the CEF route is disabled: set cef.tenant in the config to enable it", "disabled")
        _check_client(request, settings)
        binding = exchange.bound(self._intake.bind(settings.tenant, settings.template))
        await self._intake.admit(binding)
        template_id = binding.template.id
        try:
            body = exchange.body = raw_body(request)
            body = exchange.body = decode_content(request, body, self._max_body_bytes)
        except Refused as e:
            e.template = template_id
            raise
        try:
            lines = within_event_limit(cef_lines(body, self._max_events), self._max_events)
        except TooManyEvents as e:
            raise too_many_events(e.limit, template_id) from None
        split = split_cef_lines((line for _, line in lines), received_at)
        if split.malformed:
            self._metrics.request(self.route, template_id, "malformed", split.malformed)
        exchange.records = (*split.cef, *split.rest)
        accepted = exchange.count_published(
            await self._intake.deliver_split(binding, template_id, self.route, split, received_at))
        return Reply(200, {"accepted": accepted, "malformed": split.malformed, "template": template_id},
                     template_id)

    def secret_headers(self) -> Sequence[str]:
        header = self._settings.value.shared_secret_header
        return () if header is None else (header,)


def _check_client(request: Request, settings: CefSettings) -> None:
    """
    403 for a client outside the allowlist, 401 without the shared secret.
    """
    allowed = networks(settings.allow_cidrs)
    if allowed:
        client = client_address(peer_host(request) or "", forwarded_for(request), networks(settings.trusted_proxies))
        if client is None or not inside(client, allowed):
            raise HttpError(403, "this client address may not post CEF (cef.allow_cidrs)", "forbidden")
    if settings.shared_secret_header is not None and settings.shared_secret is not None:
        presented = request.getHeader(settings.shared_secret_header.encode("latin-1")) or b""
        if not hmac.compare_digest(presented, settings.shared_secret.encode("utf-8")):
            raise HttpError(401, f"missing or wrong {settings.shared_secret_header} header", "invalid_secret")
