"""
Building the daemon: the store, the sink, the intake and the listeners, composed in one service.

Start order: store and sink start, the schema is upgraded, and only then do the listeners bind, so
nothing is accepted that could not be stored. Stop order is the reverse, one child at a time:
listeners close, in-flight requests finish (bounded), then the sink flushes and the store closes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort, IProtocolFactory
from twisted.logger import Logger
from twisted.web.server import Site

from aisoc_inboxd.catalog import TemplateCatalog
from aisoc_inboxd.config import Settings
from aisoc_inboxd.inflight import InFlight
from aisoc_inboxd.intake import Intake
from aisoc_inboxd.metrics import Metrics, MetricsResource
from aisoc_inboxd.pipeline import Pipeline
from aisoc_inboxd.sinks import EventSink
from aisoc_inboxd.store import Store
from aisoc_inboxd.store.secrets import SecretBox
from aisoc_inboxd.tokens import TokenCache, TokenResolver
from aisoc_inboxd.web.tree import WebDeps, build_root_resource
from aisoc_inboxd.web.site import InboxSite

_log = Logger()

#: seconds a shutdown waits for in-flight requests before the sink is stopped
DRAIN_TIMEOUT = 30.0


class SequentialMultiService(MultiService):
    """
    Stops its children one at a time, last added first, and returns a Deferred (before-shutdown
    triggers wait only on Deferreds, not coroutines).
    """

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        return Deferred.fromCoroutine(self._stop_children())

    async def _stop_children(self) -> None:
        for child in reversed(list(self)):
            if not child.running:
                continue
            try:
                await maybeDeferred(child.stopService)
            except Exception:
                _log.failure("error stopping {name}", name=child.name)


class Listener(Service):
    """
    One listening endpoint from an endpoint string. Binding failures (port in use, unreadable PEM)
    are fatal: the daemon stops rather than run deaf.
    """

    def __init__(self, description: str, factory: IProtocolFactory, reactor: Any, name: str) -> None:
        self.description = description
        self.name = name
        self._factory = factory
        self._reactor = reactor
        self.port: IListeningPort | None = None

    def listen(self) -> Deferred[IListeningPort]:
        Service.startService(self)
        d = serverFromString(self._reactor, self.description).listen(self._factory)
        d.addCallback(self._bound)
        return d

    def _bound(self, port: IListeningPort) -> IListeningPort:
        self.port = port
        _log.info("{name} listening on {address}", name=self.name, address=str(port.getHost()))
        return port

    def stopService(self) -> Deferred[None] | None:
        Service.stopService(self)
        if self.port is not None:
            port, self.port = self.port, None
            return maybeDeferred(port.stopListening)
        return None


class DrainInFlight(Service):
    """
    Sits between the listeners and the sink: stopping it waits for in-flight requests to finish.
    """

    name = "drain"

    def __init__(self, inflight: InFlight) -> None:
        self._inflight = inflight

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        d = self._inflight.drained(DRAIN_TIMEOUT)
        d.addErrback(lambda f: _log.warn("shutdown: {n} requests still in flight after {t}s",
                                         n=len(self._inflight), t=DRAIN_TIMEOUT))
        return d


class InboxDaemon(SequentialMultiService):
    """
    The whole daemon. C{started} fires once every listener is bound (or fails, after which the
    reactor is stopped).
    """

    def __init__(self, store: Store, sink: EventSink, intake: Intake, token_cache: TokenCache,
                 metrics: Metrics, inflight: InFlight, listeners: list[Listener], reactor: Any) -> None:
        super().__init__()
        self.store = store
        self.token_cache = token_cache
        self.sink = sink
        self.intake = intake
        self.metrics = metrics
        self.listeners = listeners
        self._reactor = reactor
        for child in (store, sink, DrainInFlight(inflight), *listeners):
            child.setServiceParent(self)
        self.started: Deferred[None] = Deferred()
        self.start_failed = False

    def startService(self) -> None:
        Service.startService(self)
        for child in self:
            if not isinstance(child, Listener):
                child.startService()
        Deferred.fromCoroutine(self._open()).chainDeferred(self.started)

    async def _open(self) -> None:
        try:
            version = await self.store.upgrade()
            _log.info("store ready at schema version {version}", version=version)
            for listener in self.listeners:
                await listener.listen()
        except Exception as e:
            self.start_failed = True
            _log.failure("cannot start: {error}", error=str(e))
            if self._reactor.running:
                self._reactor.stop()
            raise

    def address(self, name: str) -> Any:
        """
        The bound address of the first listener called C{name} (tests bind port 0).
        """
        for listener in self.listeners:
            if listener.name == name and listener.port is not None:
                return listener.port.getHost()
        raise KeyError(name)


def open_store(settings: Settings, reactor: Any) -> Store:
    box = SecretBox.from_key_file(settings.state_path(settings.secret_key_file))
    if settings.database.dsn:
        from aisoc_inboxd.store.postgres import PostgresStore

        return PostgresStore(settings.database.dsn, box, reactor)
    from aisoc_inboxd.store.sqlite import SqliteStore

    return SqliteStore(str(settings.state_path("inboxd.sqlite3")), box, reactor)


def build_sink(settings: Settings, reactor: Any, metrics: Metrics) -> EventSink:
    if settings.sink.type == "kafka":
        raise NotImplementedError("the kafka sink is wired in by the Kafka sink change")
    from aisoc_inboxd.sinks.file import FileSink

    file = settings.sink.file
    return FileSink(settings.state_path(file.directory), reactor, max_bytes=file.max_bytes)


def build_daemon(settings: Settings, catalog: TemplateCatalog, reactor: Any) -> InboxDaemon:
    """
    Compose the daemon from settings; C{catalog} was loaded (and validated) by the caller.
    """
    Path(settings.state_dir).mkdir(parents=True, exist_ok=True)
    metrics = Metrics()
    store = open_store(settings, reactor)
    sink = build_sink(settings, reactor, metrics)
    cache_settings = settings.token_cache
    cache = TokenCache(reactor, ttl=cache_settings.ttl, negative_ttl=cache_settings.negative_ttl,
                       max_size=cache_settings.max_size, on_size=metrics.token_cache_size.set)
    intake = Intake(TokenResolver(store, cache), catalog, Pipeline(sink, metrics), reactor)
    inflight = InFlight(reactor)
    http = settings.http
    deps = WebDeps(intake=intake, metrics=metrics, inflight=inflight, max_body_bytes=http.max_body_bytes)
    site = InboxSite(build_root_resource(deps), max_body_bytes=http.max_body_bytes,
                     on_too_large=lambda path: metrics.request("webhook", None, "too_large"),
                     timeout=http.timeout, reactor=reactor)
    listeners = [Listener(desc, site, reactor, "http") for desc in http.listen]
    if settings.metrics.listen:
        metrics_site = Site(MetricsResource(metrics.registry), reactor=reactor)
        metrics_site.log = lambda request: None  # type: ignore[method-assign]
        listeners += [Listener(desc, metrics_site, reactor, "metrics") for desc in settings.metrics.listen]
    return InboxDaemon(store, sink, intake, cache, metrics, inflight, listeners, reactor)
