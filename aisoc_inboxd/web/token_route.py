"""
The shape every token route shares (C{/v1/inbox/{token}}, C{/v1/inbox/email/{token}}): resolve the
token (and take one request from its tenant's rate limit), verify the signature over the raw body,
decode the body into records the route's own way, publish, and answer
C{200 {"accepted": N, "template": "<id>"}} once the events are durable — or replay the first answer
when the request repeats an idempotency key.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from twisted.web.server import Request

from aisoc_inboxd.config import HttpSettings
from aisoc_inboxd.formats.json_body import BodyError, Record, TooManyEvents
from aisoc_inboxd.intake.idempotency import HEADER as IDEMPOTENCY_HEADER, MAX_KEY_BYTES, StoredReply, check_key
from aisoc_inboxd.inflight import InFlight
from aisoc_inboxd.intake.intake import Binding, Intake
from aisoc_inboxd.intake.refusals import Refused, bad_request
from aisoc_inboxd.metrics import Metrics
from aisoc_inboxd.vendors import VendorGate
from aisoc_inboxd.web.body import decode_content, raw_body
from aisoc_inboxd.web.clients import ClientAddresses
from aisoc_inboxd.web.errors import too_many_events
from aisoc_inboxd.web.recorder import DeliveryRecorder
from aisoc_inboxd.web.routes import Exchange, JsonRoute, OnReply, Reply

REPLAY_HEADER = "X-AiSOC-Idempotent-Replay"


def header_values(request: Request):  # type: ignore[no-untyped-def]
    """
    A C{name → [values]} lookup over the request headers, as text.
    """
    def get(name: str) -> list[str]:
        return [v.decode("latin-1") for v in request.requestHeaders.getRawHeaders(name.encode("latin-1"), [])]
    return get


def request_headers(request: Request) -> dict[str, str]:
    """
    The request headers by lowercase name (the last value of a repeated one), for templates'
    C{header:} sources.
    """
    return {name.decode("latin-1").lower(): values[-1].decode("latin-1")
            for name, values in request.requestHeaders.getAllRawHeaders()}


def natural_key(binding: Binding, records: list[Record], headers: dict[str, str]) -> str | None:
    """
    The vendor's own delivery id (X-GitHub-Delivery, SNS MessageId, EventBridge id, …) as named by
    the template, for a single-record body without an explicit X-AiSOC-Idempotency-Key; a batch has
    no single identity, so it is not deduplicated this way.
    """
    if len(records) != 1:
        return None
    key = binding.template.idempotency_key(records[0].data, headers)
    if key is None or not key.strip() or len(key.encode("utf-8")) > MAX_KEY_BYTES:
        return None
    return key


@dataclass(frozen=True)
class Decoded:
    """
    What L{TokenRoute.decode} read from a body: its C{records}; for SES through SNS the SNS
    C{envelope}, which gets the SNS checks; and when the body went bad part-way, the C{rejection}
    the request is answered with once the C{records} before the bad part are published (Splunk
    HEC's batch semantics).
    """

    records: list[Record]
    envelope: dict[str, Any] | None = None
    rejection: Refused | None = None


class TokenRoute(JsonRoute):
    """
    Subclasses set C{route} and implement L{decode}; L{bind}, L{screen} and L{publish} are theirs
    to change (the HEC routes take the token from a header and answer in Splunk's words).
    """

    def __init__(self, intake: Intake, metrics: Metrics, inflight: InFlight, max_body_bytes: int,
                 vendors: VendorGate | None = None, observers: Sequence[OnReply] = (),
                 max_events: int = HttpSettings.max_events_per_request,
                 clients: ClientAddresses = ClientAddresses(),
                 deliveries: DeliveryRecorder | None = None) -> None:
        """
        @param max_events: the most events one request may carry (C{http.max_events_per_request});
            C{decode} refuses a body with more before building its records.
        """
        super().__init__(metrics, inflight, observers, clients, deliveries)
        self._intake = intake
        self._max_body_bytes = max_body_bytes
        self._max_events = max_events
        self._vendors = vendors or VendorGate()

    def decode(self, request: Request, body: bytes) -> Decoded:
        """
        What C{body} (already gzip-decoded) carries; raise L{BodyError}, L{TooManyEvents} (past
        C{self._max_events}) or an L{HttpError} (415).
        """
        raise NotImplementedError

    async def bind(self, request: Request) -> Binding:
        """
        Resolve the token this request presents: the last segment of the URL path the tree walked
        to reach this route (C{/v1/inbox/{token}}, C{/v1/inbox/email/{token}}).
        """
        return await self._intake.authorize(request.prepath[-1].decode("latin-1"), self.client_of(request))

    async def publish(self, request: Request, exchange: Exchange, binding: Binding, records: list[Record],
                      received_at: float, headers: dict[str, str]) -> StoredReply:
        """
        Deliver the records and return the reply to send once they are durable.
        """
        accepted = exchange.count_published(
            await self._intake.deliver(binding, self.route, records, received_at, headers))
        return StoredReply(200, {"accepted": accepted, "template": binding.template.id})

    async def screen(self, binding: Binding, decoded: Decoded) -> None:
        """
        The vendor checks for this template (e.g. SNS signatures and confirmations); raise an
        L{Refused} to refuse the request.
        """
        await self._vendors.screen(binding.template, decoded.records)

    @staticmethod
    def _fingerprint(binding: Binding) -> str:
        assert binding.token is not None  # token routes always bind through a token
        return binding.token.fingerprint

    async def handle(self, request: Request, exchange: Exchange) -> Reply:
        received_at = exchange.received_at = self._intake.now()
        binding = exchange.bound(await self.bind(request))
        template_id = binding.template.id
        try:
            key = check_key(request.getHeader(IDEMPOTENCY_HEADER.encode("ascii")))
            raw = exchange.body = raw_body(request)
            self._intake.verify_signature(binding, raw, header_values(request))
            exchange.body = decode_content(request, raw, self._max_body_bytes)
            decoded = self.decode(request, exchange.body)
            exchange.records = decoded.records
            await self.screen(binding, decoded)
        except BodyError as e:
            raise bad_request(f"bad body: {e}", template_id) from None
        except TooManyEvents as e:
            raise too_many_events(e.limit, template_id) from None
        except Refused as e:
            e.template = e.template or template_id
            raise

        records, rejection = decoded.records, decoded.rejection
        if rejection is not None:
            rejection.template = rejection.template or template_id
        headers = exchange.headers = request_headers(request)
        explicit = key is not None
        key = key or natural_key(binding, records, headers)

        async def publish() -> StoredReply:
            reply = await self.publish(request, exchange, binding, records, received_at, headers)
            if rejection is not None:
                raise rejection
            return reply

        if key is None:
            reply, replay = await publish(), False
        else:
            try:
                reply, replay = await self._intake.idempotency.once(self._fingerprint(binding), key, publish,
                                                                    explicit)
            except Refused as e:
                e.template = e.template or template_id
                raise
        return Reply(reply.status, reply.body, template_id, "replay" if replay else "ok",
                     {REPLAY_HEADER: "true"} if replay else {})
