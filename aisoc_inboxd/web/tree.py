"""
The HTTP resource tree: C{/v1/inbox/…} routes, C{/healthz} and C{/readyz}.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

from twisted.internet.defer import Deferred
from twisted.web.resource import Resource
from twisted.web.server import Request

from aisoc_inboxd.config import CefSettings, HttpSettings
from aisoc_inboxd.inflight import InFlight
from aisoc_inboxd.intake.intake import Intake
from aisoc_inboxd.metrics import Metrics
from aisoc_inboxd.reload import Replaceable
from aisoc_inboxd.web.email import EmailRoute
from aisoc_inboxd.store import Store
from aisoc_inboxd.tokens import TokenAdmin, TokenCache
from aisoc_inboxd.vendors import VendorGate
from aisoc_inboxd.web.admin import AdminRoute
from aisoc_inboxd.web.cef import CefRoute
from aisoc_inboxd.web.delivery_desk import DeliveryDesk, DeliveryPeer
from aisoc_inboxd.web.clients import ClientAddresses
from aisoc_inboxd.web.hec import HecAckRoute, HecDeps, HecEventRoute, HecHealth, HecRawRoute
from aisoc_inboxd.web.recorder import DeliveryRecorder
from aisoc_inboxd.web.routes import OnReply, write_json
from aisoc_inboxd.web.status import StatusPage, StatusSources
from aisoc_inboxd.web.webhook import WebhookRoute


@dataclass(frozen=True)
class WebDeps:
    intake: Intake
    metrics: Metrics
    inflight: InFlight
    max_body_bytes: int
    #: the most events one request may carry (C{http.max_events_per_request})
    max_events: int = HttpSettings.max_events_per_request
    vendors: VendorGate = field(default_factory=VendorGate)
    #: told of every inbox route's reply (push stats, the status page's recent errors)
    observers: tuple[OnReply, ...] = ()
    #: the Splunk HEC routes' settings and ack channels; without them those routes are not served
    hec: HecDeps | None = None
    #: the token-less CEF route's tenant, template and guards (unset tenant: the route answers 404),
    #: read at each request: a reload replaces them
    cef: Replaceable[CefSettings] = field(default_factory=lambda: Replaceable(CefSettings()))
    #: where requests come from (C{http.trusted_proxies})
    clients: ClientAddresses = field(default_factory=ClientAddresses)
    #: keeps every token's recent deliveries (and the CEF route's); without it none are kept
    deliveries: DeliveryRecorder | None = None
    #: the worker processes whose recent deliveries the admin API reads with the daemon's
    delivery_peers: Callable[[], Iterable[DeliveryPeer]] = tuple


class NotFound(Resource):
    isLeaf = True

    def render(self, request: Request) -> bytes:
        return write_json(request, 404, {"error": "no such route"})


class InboxResource(Resource):
    """
    C{/v1/inbox/}: the fixed routes C{email/{token}}, C{hec} and C{cef}; any other child name is a
    token. The routes are built once, here; each reads its token from the path it was reached by.
    """

    def __init__(self, deps: WebDeps, hec_events: HecEventRoute | None) -> None:
        super().__init__()
        self._webhook = WebhookRoute(deps.intake, deps.metrics, deps.inflight, deps.max_body_bytes, deps.vendors,
                                     deps.observers, deps.max_events, deps.clients, deliveries=deps.deliveries)
        self._email = EmailRoute(deps.intake, deps.metrics, deps.inflight, deps.max_body_bytes, deps.vendors,
                                 deps.observers, deps.max_events, deps.clients, deliveries=deps.deliveries)
        self._cef = CefRoute(deps.cef, deps.intake, deps.metrics, deps.inflight, deps.max_body_bytes,
                             deps.observers, deps.max_events, deps.clients, deliveries=deps.deliveries)
        self._hec_events = hec_events

    def getChild(self, path: bytes, request: Request) -> Resource:
        if path == b"email" and len(request.postpath) == 1 and request.postpath[0]:
            request.prepath.append(request.postpath.pop(0))
            return self._email
        if path == b"hec" and self._hec_events is not None and not request.postpath:
            return self._hec_events
        if path == b"cef" and not request.postpath:
            return self._cef
        if not path or request.postpath:
            return NotFound()
        return self._webhook


class CollectorResource(Resource):
    """
    C{/services/collector} (Splunk HEC's paths): itself and C{event} take envelopes, C{raw} lines,
    C{ack} ack queries, C{health} a probe; each but C{ack} also under C{/1.0}.
    """

    def __init__(self, deps: WebDeps, hec: HecDeps, events: HecEventRoute) -> None:
        super().__init__()
        self._events = events
        self._children: dict[bytes, Resource] = {
            b"event": events,
            b"raw": HecRawRoute(deps.intake, deps.metrics, deps.inflight, deps.max_body_bytes, deps.vendors, hec,
                                deps.observers, deps.max_events, deps.clients, deliveries=deps.deliveries),
            b"ack": HecAckRoute(deps.intake, deps.metrics, deps.inflight, hec, deps.observers, deps.clients),
            b"health": HecHealth(deps.intake),
        }

    def render(self, request: Request) -> object:
        return self._events.render(request)

    def getChild(self, path: bytes, request: Request) -> Resource:
        if request.postpath not in ([], [b"1.0"]) or (path == b"ack" and request.postpath):
            return NotFound()
        return self._children.get(path, NotFound())


class Health(Resource):
    """
    C{/healthz}: the process answers. C{/readyz}: the pipeline can make events durable now; else 503
    with the sink's reason (never a path).
    """

    isLeaf = True

    def __init__(self, intake: Intake | None) -> None:
        super().__init__()
        self._intake = intake

    def render_GET(self, request: Request) -> bytes:
        problem = None if self._intake is None else self._intake.not_ready()
        if problem is None:
            return write_json(request, 200, {"status": "ok"})
        return write_json(request, 503, {"status": "not ready", "error": f"the sink cannot accept events: {problem}"})


class Root(Resource):
    def getChild(self, path: bytes, request: Request) -> Resource:
        return NotFound()


def build_admin_resource(admin: TokenAdmin, store: Store, cache: TokenCache, api_key: bytes,
                         deps: WebDeps, status: StatusSources | None = None) -> Resource:
    """
    The admin listener's tree: C{/v1/admin/…}, the same health endpoints as the HTTP listener, and
    the status page C{/status} when given its sources.
    """
    async def invalidate(fingerprint_hex: str) -> None:
        cache.invalidate(fingerprint_hex)
        await store.broadcast_invalidation(fingerprint_hex)

    root = Root()
    v1 = Root()
    root.putChild(b"v1", v1)
    v1.putChild(b"admin", AdminRoute(admin, lambda fp: Deferred.fromCoroutine(invalidate(fp)), api_key,
                                     deps.metrics, deps.inflight,
                                     delivery_desk(deps, store)))
    root.putChild(b"healthz", Health(None))
    root.putChild(b"readyz", Health(deps.intake))
    if status is not None:
        root.putChild(b"status", StatusPage(status, api_key))
    return root


def delivery_desk(deps: WebDeps, store: Store) -> DeliveryDesk | None:
    """
    What the admin API and the status page read recent deliveries through (none when none are kept).
    """
    if deps.deliveries is None:
        return None
    return DeliveryDesk(deps.deliveries, deps.intake, store, deps.delivery_peers, deps.max_events)


def route_of(path: bytes) -> str:
    """
    The metric C{route} label of a request path, for requests refused before any route ran (413
    for a declared length over the limit).
    """
    if path.startswith(b"/services/collector") or path.startswith(b"/v1/inbox/hec"):
        return "hec"
    if path.startswith(b"/v1/inbox/email/"):
        return "email"
    if path.startswith(b"/v1/inbox/cef"):
        return "cef"
    return "webhook"


def build_root_resource(deps: WebDeps) -> Resource:
    """
    The HTTP listener's tree, every route in it built once.
    """
    hec_events = None if deps.hec is None else HecEventRoute(
        deps.intake, deps.metrics, deps.inflight, deps.max_body_bytes, deps.vendors, deps.hec, deps.observers,
        deps.max_events, deps.clients, deliveries=deps.deliveries)
    root = Root()
    v1 = Root()
    root.putChild(b"v1", v1)
    v1.putChild(b"inbox", InboxResource(deps, hec_events))
    if deps.hec is not None and hec_events is not None:
        services = Root()
        root.putChild(b"services", services)
        services.putChild(b"collector", CollectorResource(deps, deps.hec, hec_events))
    root.putChild(b"healthz", Health(None))
    root.putChild(b"readyz", Health(deps.intake))
    return root
