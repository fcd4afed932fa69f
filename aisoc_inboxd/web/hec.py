"""
The Splunk HEC drop-in: C{POST /v1/inbox/hec} and C{/services/collector[/event[/1.0]]} (envelopes),
C{/services/collector/raw[/1.0]} (lines), C{POST /services/collector/ack} and
C{GET /services/collector/health[/1.0]}. CEF lines, sent raw or as an envelope's event, go through
the cef-syslog template (L{aisoc_inboxd.formats.hec}).

The token comes from C{Authorization: Splunk <token>}, from Basic auth (any user, the token as the
password) or, when C{hec.allow_query_string_token} is on, from C{?token=}. From there a request runs
the same token route as every other (rate limit, signature, idempotency key, gzip, body limit,
publish, 2xx once durable), and every answer is Splunk's own C{{"text":…,"code":N}} body, compact
and without a trailing newline as splunkd writes it. Errors of the shared intake are translated by
their metric outcome; those Splunk has no code for (413, 415, 409) keep the daemon's status and body.
"""
from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from typing import Any, Sequence

from twisted.web.resource import Resource
from twisted.web.server import Request

from aisoc_inboxd import fastjson
from aisoc_inboxd.config import HecSettings, HttpSettings
from aisoc_inboxd.formats import hec
from aisoc_inboxd.formats.hec import HecError, HecStatus, reply_body
from aisoc_inboxd.formats.json_body import Record
from aisoc_inboxd.hec_acks import Acks, AcksUnavailable, ChannelsFull
from aisoc_inboxd.intake.idempotency import StoredReply
from aisoc_inboxd.store import TokenRecord
from aisoc_inboxd.inflight import InFlight
from aisoc_inboxd.intake.intake import Binding, Intake
from aisoc_inboxd.intake.refusals import Refused
from aisoc_inboxd.metrics import Metrics
from aisoc_inboxd.vendors import VendorGate
from aisoc_inboxd.web.clients import ClientAddresses
from aisoc_inboxd.web.errors import HttpError, http_headers
from aisoc_inboxd.web.recorder import DeliveryRecorder
from aisoc_inboxd.web.routes import Exchange, JsonRoute, OnReply, Reply
from aisoc_inboxd.web.token_route import Decoded, TokenRoute

ROUTE = "hec"
#: the template CEF lines (raw, or an envelope's event) are mapped with, when it is loaded and allowed
CEF_TEMPLATE = "cef-syslog"
CHANNEL_HEADER = b"x-splunk-request-channel"
#: what splunkd sends
CONTENT_TYPE = b"application/json; charset=UTF-8"

#: intake's refusals (by outcome) and the Splunk status that says the same
_SPLUNK_BY_OUTCOME = {
    "invalid_token": hec.INVALID_TOKEN,
    "invalid_signature": hec.INVALID_AUTHORIZATION,
    "unknown_template": hec.TOKEN_DISABLED,  # the token can no longer be used
    "rate_limited": hec.SERVER_BUSY,
    "unknown_token_flood": hec.SERVER_BUSY,
    "unavailable": hec.SERVER_BUSY,
    "store_unavailable": hec.SERVER_BUSY,
    "bad_request": hec.INVALID_DATA_FORMAT,  # malformed gzip, a bad idempotency key
}


@dataclass(frozen=True)
class HecDeps:
    settings: HecSettings
    #: the daemon's ack registry: its own, or asked across a worker's control channel
    acks: Acks


class SplunkError(HttpError):
    """
    An L{HttpError} answered with Splunk's body: C{code}, and C{invalid-event-number} when it names an event.
    """

    code: int
    event_number: int | None


def splunk_error(status: HecStatus, outcome: str, event_number: int | None = None,
                 headers: dict[str, str] | None = None, template: str | None = None,
                 token: TokenRecord | None = None) -> SplunkError:
    error = SplunkError(status.http_status, status.text, outcome, headers, template, token)
    error.code, error.event_number = status.code, event_number
    return error


def rejected(error: HecError) -> SplunkError:
    """
    A body problem found by the parser, as the request's answer.
    """
    outcome = "no_data" if error.status is hec.NO_DATA else "bad_request"
    return splunk_error(error.status, outcome, error.event_number)


def as_splunk(refused: Refused) -> Refused:
    """
    One of intake's refusals in Splunk's words (same metric outcome, headers such as Retry-After kept).
    """
    status = _SPLUNK_BY_OUTCOME.get(refused.outcome)
    if status is None or isinstance(refused, SplunkError):
        return refused
    event_number = 0 if status is hec.INVALID_DATA_FORMAT else None
    return splunk_error(status, refused.outcome, event_number, http_headers(refused), refused.template, refused.token)


def acks_unavailable(template: str) -> SplunkError:
    """
    A worker could not reach the daemon's acks (L{AcksUnavailable}): 503 code 9, so the client
    retries (a post's events may be durable already, then its retry is a duplicate, never a loss).
    """
    return splunk_error(hec.SERVER_BUSY, "ack_unavailable", template=template)


def write_splunk(request: Request, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", CONTENT_TYPE)
    for name, value in (headers or {}).items():
        request.setHeader(name.encode("latin-1"), value.encode("latin-1"))
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def presented_token(request: Request) -> tuple[str, bool]:
    """
    The token a request presents and whether it came from the query string; 401 code 2 without
    one, 401 code 3 for an Authorization header of another shape.
    """
    header = (request.getHeader(b"authorization") or b"").strip()
    if not header:
        query = request.args.get(b"token", [b""])[0]
        if not query:
            raise splunk_error(hec.TOKEN_REQUIRED, "token_required")
        return query.decode("latin-1"), True
    scheme, _, credentials = header.partition(b" ")
    credentials = credentials.strip()
    if scheme.lower() == b"basic":
        try:
            credentials = base64.b64decode(credentials, validate=True).partition(b":")[2]
        except (binascii.Error, ValueError):
            raise splunk_error(hec.INVALID_AUTHORIZATION, "invalid_authorization") from None
    elif scheme.lower() != b"splunk":
        raise splunk_error(hec.INVALID_AUTHORIZATION, "invalid_authorization")
    if not credentials:
        raise splunk_error(hec.TOKEN_REQUIRED, "token_required")
    return credentials.decode("latin-1"), False


def request_channel(request: Request) -> str | None:
    """
    The channel of a request: C{X-Splunk-Request-Channel}, else C{?channel=}.
    """
    value = request.getHeader(CHANNEL_HEADER) or request.args.get(b"channel", [b""])[0]
    return value.decode("latin-1").strip() or None


async def bind_hec(request: Request, client: str | None, intake: Intake, deps: HecDeps) -> Binding:
    """
    Resolve the presented token (spending C{client}'s lookups if unknown); then, as splunkd orders
    it, refuse a query-string token when that is off (400 code 16) and, for a token with acks, a
    missing (10) or malformed (11) channel.
    """
    token, from_query = presented_token(request)
    binding = await intake.authorize(token, client)
    template_id = binding.template.id
    if from_query and not deps.settings.allow_query_string_token:
        raise splunk_error(hec.QUERY_STRING_AUTH_DISABLED, "query_token_disabled", template=template_id)
    assert binding.token is not None
    if binding.token.hec_acks:
        channel = request_channel(request)
        if channel is None:
            raise splunk_error(hec.DATA_CHANNEL_MISSING, "channel_missing", template=template_id)
        try:
            uuid.UUID(channel)
        except ValueError:
            raise splunk_error(hec.INVALID_DATA_CHANNEL, "invalid_channel", template=template_id) from None
    return binding


class SplunkReplies(JsonRoute):
    """
    A route answered in Splunk's words: a L{SplunkError} as Splunk's body, every body compact.
    """

    route = ROUTE

    def refusal_reply(self, refused: Refused) -> Reply:
        reply = super().refusal_reply(refused)
        if isinstance(refused, SplunkError):
            reply.body = {"text": refused.message, "code": refused.code}
            if refused.event_number is not None:
                reply.body["invalid-event-number"] = refused.event_number
        return reply

    def write_reply(self, request: Request, reply: Reply) -> bytes:
        return write_splunk(request, reply.status, reply.body, reply.headers)


class _HecIntakeRoute(SplunkReplies, TokenRoute):
    """
    The shared token route, bound through L{bind_hec} (the token is in a header: the URL holds
    none) and answered C{Success} (with an C{ackId} for a token with acks).
    """

    def __init__(self, intake: Intake, metrics: Metrics, inflight: InFlight, max_body_bytes: int,
                 vendors: VendorGate, deps: HecDeps, observers: Sequence[OnReply] = (),
                 max_events: int = HttpSettings.max_events_per_request,
                 clients: ClientAddresses = ClientAddresses(),
                 deliveries: DeliveryRecorder | None = None) -> None:
        super().__init__(intake, metrics, inflight, max_body_bytes, vendors, observers, max_events, clients, deliveries)
        self._hec = deps

    async def handle(self, request: Request, exchange: Exchange) -> Reply:
        try:
            return await super().handle(request, exchange)
        except Refused as e:
            raise as_splunk(e) from None

    async def bind(self, request: Request) -> Binding:
        binding = await bind_hec(request, self.client_of(request), self._intake, self._hec)
        channel = self._ack_channel(request, binding)
        if channel is not None:
            try:
                await self._hec.acks.open(binding.token.fingerprint, channel)  # type: ignore[union-attr]
            except ChannelsFull:
                raise splunk_error(hec.SERVER_BUSY, "unavailable", template=binding.template.id) from None
            except AcksUnavailable:
                raise acks_unavailable(binding.template.id) from None
        return binding

    def parses_cef(self) -> bool:
        """
        Whether CEF events are told apart: only while the cef-syslog template is loaded and allowed.
        """
        return self._intake.catalog.get(CEF_TEMPLATE) is not None

    async def publish(self, request: Request, exchange: Exchange, binding: Binding, records: list[Record],
                      received_at: float, headers: dict[str, str]) -> StoredReply:
        """
        Text and envelope events through the token's template, CEF events through cef-syslog.
        """
        exchange.count_published(await self._intake.deliver_split(binding, CEF_TEMPLATE, self.route,
                                                                  hec.split(records), received_at, headers))
        return await self.success(request, binding)

    def _ack_channel(self, request: Request, binding: Binding) -> str | None:
        return request_channel(request) if binding.token is not None and binding.token.hec_acks else None

    async def success(self, request: Request, binding: Binding) -> StoredReply:
        """
        Splunk's C{Success}, sent once the events are durable: so an C{ackId} is issued already true.
        """
        channel = self._ack_channel(request, binding)
        if channel is None:
            return StoredReply(200, reply_body(hec.SUCCESS))
        try:
            ack_id = await self._hec.acks.issue(binding.token.fingerprint, channel)  # type: ignore[union-attr]
        except AcksUnavailable:
            raise acks_unavailable(binding.template.id) from None
        return StoredReply(200, reply_body(hec.SUCCESS, ackId=ack_id))


class HecEventRoute(_HecIntakeRoute):
    """
    C{/v1/inbox/hec}, C{/services/collector}, C{/services/collector/event[/1.0]}: JSON envelopes;
    an envelope whose event is a CEF line goes through the cef-syslog template when it is loaded.
    The envelopes before a bad one are published, then the bad one is answered, as Splunk does.
    """

    def decode(self, request: Request, body: bytes) -> Decoded:
        try:
            batch = hec.parse_event_body(body, self._max_events)
        except HecError as e:
            raise rejected(e) from None
        records = list(batch.records)
        if self.parses_cef():
            now = self._intake.now()
            records = [hec.cef_envelope(record, now) or record for record in records]
        if batch.rejection is None:
            return Decoded(records)
        if records:
            return Decoded(records, rejection=rejected(batch.rejection))
        raise rejected(batch.rejection)


class HecRawRoute(_HecIntakeRoute):
    """
    C{/services/collector/raw[/1.0]}: one event per line, metadata from the query string; CEF lines
    go through the cef-syslog template when it is loaded, the rest through the token's.
    """

    def decode(self, request: Request, body: bytes) -> Decoded:
        metadata = {key: values[0].decode("utf-8", "replace")
                    for key in hec.METADATA_KEYS if (values := request.args.get(key.encode("ascii")))}
        try:
            batch = hec.parse_raw_body(body, metadata, self.parses_cef(), self._intake.now(), self._max_events)
        except HecError as e:
            raise rejected(e) from None
        return Decoded([*batch.rest, *batch.cef])


class HecAckRoute(SplunkReplies):
    """
    C{POST /services/collector/ack} with C{{"acks": [ids]}}: C{{"acks": {"<id>": true|false}}}.
    """

    def __init__(self, intake: Intake, metrics: Metrics, inflight: InFlight, deps: HecDeps,
                 observers: Sequence[OnReply] = (), clients: ClientAddresses = ClientAddresses()) -> None:
        super().__init__(metrics, inflight, observers, clients)
        self._intake = intake
        self._hec = deps

    async def handle(self, request: Request, exchange: Exchange) -> Reply:
        try:
            binding = exchange.bound(await bind_hec(request, self.client_of(request), self._intake, self._hec))
        except Refused as e:
            raise as_splunk(e) from None
        token = binding.token
        assert token is not None
        template_id = binding.template.id
        if not token.hec_acks:
            raise splunk_error(hec.ACK_DISABLED, "ack_disabled", template=template_id)
        channel = request_channel(request)
        assert channel is not None  # bind_hec requires one for a token with acks
        assert request.content is not None
        ack_ids = _ack_ids(request.content.read())
        if ack_ids is None:
            raise splunk_error(hec.INVALID_DATA_FORMAT, "bad_request", template=template_id)
        try:
            statuses = await self._hec.acks.query(token.fingerprint, channel, ack_ids)
        except AcksUnavailable:
            raise acks_unavailable(template_id) from None
        return Reply(200, {"acks": {str(ack_id): done for ack_id, done in statuses.items()}}, template_id)


def _ack_ids(body: bytes) -> list[int] | None:
    """
    The ids of an ack query C{{"acks": [0, 1]}}, or C{None} when it is not one.
    """
    try:
        query = fastjson.loads(body.decode("utf-8"))
    except ValueError:  # not UTF-8, not JSON
        return None
    ids = query.get("acks") if isinstance(query, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
        return None
    return ids


class HecHealth(Resource):
    """
    C{GET /services/collector/health[/1.0]}, without a token: 200 code 17 while the pipeline can
    make events durable, else 503 code 18.
    """

    isLeaf = True

    def __init__(self, intake: Intake) -> None:
        super().__init__()
        self._intake = intake

    def render_GET(self, request: Request) -> bytes:
        status = hec.HEALTHY if self._intake.not_ready() is None else hec.UNHEALTHY
        return write_splunk(request, status.http_status, reply_body(status))
