"""
Building the daemon: the store, the sink, the intake and the listeners, composed in one service.

Start order: store and sink start, the schema is upgraded, and only then do the listeners bind, so
nothing is accepted that could not be stored. Stop order is the reverse, one child at a time:
listeners close, in-flight requests finish (bounded), then the sink flushes and the store closes.
"""
from __future__ import annotations

import dataclasses
import re
import secrets
import signal
import socket
from pathlib import Path
from typing import Any, Callable, Mapping

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.web.server import Site

from aisoc_inboxd.activity import EventRates, RecentErrors
from aisoc_inboxd.catalog import TemplateCatalog
from aisoc_inboxd import systemd
from aisoc_inboxd.config import ConfigError, Settings, SyslogListenerSettings, load_settings
from aisoc_inboxd.hec_acks import AckChannels, AckDaemon, LocalAcks, RemoteAcks
from aisoc_inboxd.idempotency import Idempotency
from aisoc_inboxd.imap import ImapPoller
from aisoc_inboxd.inflight import InFlight
from aisoc_inboxd.keyfiles import read_or_create
from aisoc_inboxd.intake import Intake
from aisoc_inboxd.metrics import MergedMetrics, Metrics, MetricsResource
from aisoc_inboxd.periodic import Periodic
from aisoc_inboxd.pipeline import Pipeline
from aisoc_inboxd.push_stats import PushStatsRecorder
from aisoc_inboxd.ratelimit import LeasedRateLimiter, RateLimiter
from aisoc_inboxd.sinks import EventSink
from aisoc_inboxd.store import Store
from aisoc_inboxd.store.health import StoreHealth
from aisoc_inboxd.store.secrets import SecretBox
from aisoc_inboxd.syslog.protocol import Saturation, SyslogDatagramProtocol, SyslogIntake, SyslogStreamFactory
from aisoc_inboxd.reload import Reloader, Reloads, Replaceable
from aisoc_inboxd.tls import ReloadableTLS, split_tls_endpoint
from aisoc_inboxd.tokens import LookupBudget, TokenAdmin, TokenCache, TokenResolver
from aisoc_inboxd.vendors import VendorGate, build_vendor_gate
from aisoc_inboxd.web.channel import ChannelLimits
from aisoc_inboxd.web.clients import ClientAddresses
from aisoc_inboxd.web.hec import HecDeps
from aisoc_inboxd.deliveries import DeliveryLog
from aisoc_inboxd.syslog.samples import FrameSamples
from aisoc_inboxd.web.recorder import DeliveryRecorder
from aisoc_inboxd.web.status import StatusSources, TokenStoreView
from aisoc_inboxd.web.tree import WebDeps, build_admin_resource, build_root_resource, delivery_desk
from aisoc_inboxd.web.site import InboxSite, inbox_site
from aisoc_inboxd.workers.supervisor import WorkerSupervisor, snapshot_path, write_snapshot

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

    def __init__(self, description: str, factory: IProtocolFactory, reactor: Any, name: str,
                 client_ca: Path | None = None, inherited_fd: int | None = None) -> None:
        """
        @param client_ca: with an C{ssl:} endpoint, require client certificates issued by this CA.
        @param inherited_fd: serve this listening socket, bound by the daemon, instead of binding
            C{description} (a worker process).
        """
        self.description = description
        self.name = name
        self._reactor = reactor
        self._inherited_fd = inherited_fd
        self.port: IListeningPort | None = None
        self.tls: ReloadableTLS | None = None
        tls_split = split_tls_endpoint(description)
        if tls_split is None:
            self._endpoint_description, self._factory = description, factory
        else:
            # ssl: listens as tcp: with TLS wrapped here, so SIGHUP can swap the certificate
            self._endpoint_description, files = tls_split
            self.tls = ReloadableTLS(dataclasses.replace(files, client_ca=client_ca))
            self._factory = TLSMemoryBIOFactory(self.tls, False, factory)

    def listen(self) -> Deferred[IListeningPort]:
        Service.startService(self)
        if self._inherited_fd is not None:
            return maybeDeferred(self._reactor.adoptStreamPort, self._inherited_fd,
                                 _family(self._inherited_fd), self._factory).addCallback(self._bound)
        d = serverFromString(self._reactor, self._endpoint_description).listen(self._factory)
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


class DatagramListener(Service):
    """
    A UDP port, shaped like L{Listener} so it binds and closes with the others (Twisted has no
    datagram endpoint strings).
    """

    tls = None

    def __init__(self, port: int, interface: str, protocol: Any, reactor: Any, name: str,
                 inherited_fd: int | None = None) -> None:
        self.description = f"udp:{port}:interface={interface}"
        self.name = name
        self.port: Any = None
        self._reactor = reactor
        self._protocol = protocol
        self._inherited_fd = inherited_fd
        self._number, self._interface = port, interface

    def listen(self) -> Deferred[Any]:
        Service.startService(self)
        if self._inherited_fd is not None:
            fd = self._inherited_fd
            d = maybeDeferred(self._reactor.adoptDatagramPort, fd, _family(fd), self._protocol, MAX_DATAGRAM)
        else:
            d = maybeDeferred(self._reactor.listenUDP, self._number, self._protocol, self._interface,
                              MAX_DATAGRAM)
        return d.addCallback(self._bound)

    def _bound(self, port: Any) -> Any:
        self.port = port
        _log.info("{name} listening on {address}", name=self.name, address=str(self.port.getHost()))
        return self.port

    def stopService(self) -> Deferred[None] | None:
        Service.stopService(self)
        port, self.port = self.port, None
        return maybeDeferred(port.stopListening) if port is not None else None


#: the largest syslog datagram read whole
MAX_DATAGRAM = 65535


def _family(fd: int) -> socket.AddressFamily:
    """
    The address family of an inherited socket, which the reactor must be told when adopting it.
    """
    sock = socket.socket(fileno=fd)
    try:
        return sock.family
    finally:
        sock.detach()


def syslog_listeners(settings: Settings, intake: Intake, metrics: Metrics, inflight: InFlight,
                     sink: EventSink, reactor: Any, role: WorkerRole | None = None,
                     deliveries: DeliveryLog | None = None) -> list[Listener | DatagramListener]:
    """
    One listener per C{syslog.listeners} entry (their templates were checked with the catalog's
    L{TemplateCatalog.check_in_use}). The Kafka sink's saturation pauses TCP reading too; each
    keeps its last frames in C{deliveries}, when given.
    """
    saturation: Saturation | None = sink if hasattr(sink, "unsaturated") else None  # type: ignore[assignment]
    built: list[Listener | DatagramListener] = []
    for entry in settings.syslog.listeners:
        samples = FrameSamples(deliveries, entry.name, entry.tenant) if deliveries else None
        listener = SyslogIntake(entry, intake, metrics.syslog, inflight, settings.syslog.max_in_flight_events,
                                saturation, settings.syslog.idle_timeout_of(entry), samples)
        name = f"syslog-{entry.name}"
        built.append(_syslog_listener(entry, listener, reactor, name, role and role.socket(name)))
    return built


def _syslog_listener(entry: SyslogListenerSettings, listener: SyslogIntake, reactor: Any, name: str,
                     inherited_fd: int | None) -> Listener | DatagramListener:
    if entry.udp_port is not None:
        return DatagramListener(entry.udp_port, entry.udp_interface, SyslogDatagramProtocol(listener, reactor),
                                reactor, name, inherited_fd)
    assert entry.endpoint is not None
    client_ca = Path(entry.client_ca_file) if entry.verify_client and entry.client_ca_file else None
    return Listener(entry.endpoint, SyslogStreamFactory(listener, reactor), reactor, name, client_ca, inherited_fd)


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
                 metrics: Metrics, inflight: InFlight, workers: list[Service],
                 listeners: list[Listener | DatagramListener], reloader: Reloader,
                 reactor: Any, supervisor: WorkerSupervisor | None = None, reloads: Reloads | None = None) -> None:
        """
        @param workers: services that need the upgraded store (cache invalidation, sweeps, pollers);
            started after the upgrade, before the listeners bind.
        @param reloader: what a reload changes in this process.
        @param supervisor: the worker processes, spawned on the bound listeners before READY=1 and
            stopped (drained) after the listeners close, before the sink stops.
        @param reloads: the reloads SIGHUP asks for; a worker process has none (the daemon runs its reloads).
        """
        super().__init__()
        self.store = store
        self.token_cache = token_cache
        self.sink = sink
        self.intake = intake
        self.metrics = metrics
        self.listeners = listeners
        self._workers = workers
        self._reactor = reactor
        self.supervisor = supervisor
        for child in (store, sink, DrainInFlight(inflight), *workers, *([supervisor] if supervisor else []),
                      *listeners):
            child.setServiceParent(self)
        self.started: Deferred[None] = Deferred()
        self.start_failed = False
        self.reloader = reloader
        self.reloads = reloads
        self._previous_sighup: Any = None

    def startService(self) -> None:
        Service.startService(self)
        if self.reloads is not None:
            self._previous_sighup = signal.signal(signal.SIGHUP, self._on_sighup)
        Deferred.fromCoroutine(self._open()).chainDeferred(self.started)

    def stopService(self) -> Deferred[None]:
        systemd.notify("STOPPING=1")
        if self.reloads is not None:
            signal.signal(signal.SIGHUP, self._previous_sighup or signal.SIG_DFL)
        return super().stopService()

    def _on_sighup(self, signum: int, frame: Any) -> None:
        assert self.reloads is not None
        self._reactor.callFromThread(self.reloads.request)

    async def _open(self) -> None:
        """
        Start the store and the sink, upgrade the schema, then start the workers and bind. Any
        failure is one log line and a reactor stop (at once, or as soon as it runs): the process
        exits instead of running deaf or hanging on the threads already started. C{started}
        fails with it; the process entry points (L{aisoc_inboxd.tap.compose}) consume that.
        """
        try:
            for child in self:
                if child not in self.listeners and child not in self._workers and child is not self.supervisor:
                    child.startService()
            version = await self.store.upgrade()
            _log.info("store ready at schema version {version}", version=version)
            for worker in self._workers:
                worker.startService()
            for listener in self.listeners:
                await listener.listen()
            if self.supervisor is not None:
                await self.supervisor.spawn_all(self.reloader.fingerprint)
            systemd.notify(f"READY=1\nSTATUS={listening(self.listeners)}")
        except Exception as e:
            if self.running:  # else a stop (SIGTERM) came during the start: what it cut short is no failure
                self.start_failed = True
                _log.critical("cannot start: {error}", error=str(e) or type(e).__name__)
                self._reactor.callWhenRunning(self._reactor.stop)
            raise

    def address(self, name: str) -> Any:
        """
        The bound address of the first listener called C{name} (tests bind port 0).
        """
        for listener in self.listeners:
            if listener.name == name and listener.port is not None:
                return listener.port.getHost()
        raise KeyError(name)


def listening(listeners: list[Listener | DatagramListener]) -> str:
    """
    The service manager's status line: where each listener listens.
    """
    return "listening on " + ", ".join(
        f"{listener.name} {listener.port.getHost().port}" for listener in listeners if listener.port)


def open_store(settings: Settings, reactor: Any, health: StoreHealth | None = None) -> Store:
    """
    @param health: told how the store's calls go (the daemon's feeds the status page and metrics).
    """
    box = SecretBox.from_key_file(settings.state_path(settings.secret_key_file))
    database = settings.database
    if database.dsn:
        from aisoc_inboxd.store.postgres import PostgresStore

        return PostgresStore(database.dsn, box, reactor, database, health)
    from aisoc_inboxd.store.sqlite import SqliteStore

    return SqliteStore(str(settings.state_path("inboxd.sqlite3")), box, reactor, database.call_timeout, health)


def build_sink(settings: Settings, reactor: Any, metrics: Metrics, role: WorkerRole | None = None) -> EventSink:
    """
    The configured sink. A worker process keeps its files (event log, spool) in C{worker-N/}
    beneath the configured directory; the daemon takes over the spools of workers the config no
    longer has, so nothing they held is stranded.
    """
    if settings.sink.type == "kafka":
        from aisoc_inboxd.sinks.kafka import KafkaSink
        from aisoc_inboxd.sinks.spool import Spool, absorb

        kafka = settings.sink.kafka
        spool_directory = settings.state_path(kafka.spool_directory)
        if role is None:
            for orphan in _worker_directories(spool_directory, beyond=settings.workers - 1):
                _log.info("taking over {count} spooled segments of a retired worker from {path}",
                          count=absorb(spool_directory, orphan), path=str(orphan))
        spool = Spool(role.directory(spool_directory) if role else spool_directory, kafka.spool_max_bytes, reactor)
        return KafkaSink(kafka.topic, kafka.config, spool, reactor, kafka.flush_timeout, registry=metrics.registry,
                         processes=settings.workers)
    from aisoc_inboxd.sinks.file import FileSink

    file = settings.sink.file
    directory = settings.state_path(file.directory)
    return FileSink(role.directory(directory) if role else directory, reactor, max_bytes=file.max_bytes,
                    registry=metrics.registry)


def _worker_directories(parent: Path, beyond: int) -> list[Path]:
    """
    The C{worker-N} directories under C{parent} with N greater than C{beyond}.
    """
    if not parent.is_dir():
        return []
    return [path for path in parent.glob("worker-*")
            if (index := re.fullmatch(r"worker-(\d+)", path.name)) and int(index[1]) > beyond]


def numbered(kind: str, index: int) -> str:
    """
    Service names must be unique: the first listener of a kind is C{http}, the next C{http-2}, …
    """
    return kind if index == 0 else f"{kind}-{index + 1}"


@dataclasses.dataclass(frozen=True)
class WorkerRole:
    """
    What a worker process (L{aisoc_inboxd.workers}) does differently from the daemon: it serves the
    daemon's sockets instead of binding its own, leases its tenants' rate limits from the daemon and
    asks it about HEC indexer acks, keeps its sink files apart, snapshots its metrics for the
    daemon's /metrics, and leaves the metrics and admin listeners, IMAP polling and sweeps to the daemon.

    @ivar sockets: listener name → the inherited listening socket's file descriptor.
    @ivar lease: the daemon's L{RateLimiter.lease}, across the control channel.
    @ivar acks: the daemon's L{AckChannels}, across the control channel.
    @ivar deliveries: the worker's recent deliveries, which the daemon reads across the control channel.
    """

    index: int
    sockets: Mapping[str, int]
    lease: Callable[[str, int], Deferred[tuple[int, float]]]
    acks: AckDaemon
    deliveries: DeliveryLog

    def socket(self, name: str) -> int:
        try:
            return self.sockets[name]
        except KeyError:
            raise ConfigError(f"worker {self.index}: the daemon passed no socket for listener {name!r}; "
                              "the worker read a different config than the daemon") from None

    def directory(self, parent: Path) -> Path:
        return parent / f"worker-{self.index}"


def build_daemon(settings: Settings, catalog: TemplateCatalog, reactor: Any,
                 vendors: VendorGate | None = None, config: Path | None = None,
                 role: WorkerRole | None = None, read_settings: Callable[[], Settings] | None = None) -> InboxDaemon:
    """
    Compose the daemon from settings; C{catalog} was loaded (and validated) by the caller.
    C{vendors} replaces the vendor checks built from C{settings.vendors} (tests point it at local
    servers). C{config} is the file the settings came from, for worker processes and reloads to
    read again (C{read_settings} replaces that reading); C{role} makes this a worker process.
    """
    catalog.check_in_use(settings)
    Path(settings.state_dir).mkdir(parents=True, exist_ok=True)
    metrics = Metrics()
    health = StoreHealth(reactor, metrics.token_store)
    store = open_store(settings, reactor, health)
    sink = build_sink(settings, reactor, metrics, role)
    cache_settings = settings.token_cache
    cache = TokenCache(reactor, ttl=cache_settings.ttl, negative_ttl=cache_settings.negative_ttl,
                       max_size=cache_settings.max_size, negative_max_size=cache_settings.negative_max_size,
                       on_size=metrics.token_cache_size.set, on_negative_size=metrics.token_store.unknown_cached.set)
    budget = LookupBudget(reactor, cache_settings.unknown_lookups_per_ip_per_sec)
    http = settings.http
    rates, recent_errors = EventRates(reactor), RecentErrors(reactor)
    pipeline = Pipeline(sink, metrics, rates.published)
    limiter = RateLimiter(reactor, http.rate_limit_per_min)
    admission = LeasedRateLimiter(reactor, http.rate_limit_per_min, role.lease) if role else limiter
    ack_channels = AckChannels.build(settings.hec, reactor)
    acks = RemoteAcks(reactor, settings.hec.channel_idle_timeout, role.acks) if role else LocalAcks(ack_channels)
    intake = Intake(TokenResolver(store, cache, budget, metrics.token_store), catalog, pipeline, admission,
                    Idempotency(store, reactor, metrics), reactor, ClientAddresses(http.trusted_proxies))
    cef = Replaceable(settings.cef)
    inflight = InFlight(reactor)
    push_stats = PushStatsRecorder(store, reactor, lambda: inflight.drained(DRAIN_TIMEOUT))
    deliveries = DeliveryRecorder(role.deliveries if role else DeliveryLog(settings.deliveries), reactor)
    supervisor: WorkerSupervisor | None = None  # set below, once the listeners are built
    deps = WebDeps(intake=intake, metrics=metrics, inflight=inflight, max_body_bytes=http.max_body_bytes,
                   observers=(push_stats.replied, recent_errors.replied),
                   vendors=vendors or build_vendor_gate(settings.vendors, reactor),
                   hec=HecDeps(settings.hec, acks), cef=cef,
                   deliveries=deliveries, delivery_peers=lambda: supervisor.serving() if supervisor else ())
    limits = ChannelLimits(http.header_timeout, http.body_timeout, http.max_header_bytes)
    site = inbox_site(build_root_resource(deps), http, metrics, reactor)
    http_names = [numbered("http", i) for i in range(len(http.listen))]
    listeners: list[Listener | DatagramListener] = [
        Listener(desc, site, reactor, name, inherited_fd=role and role.socket(name))
        for name, desc in zip(http_names, http.listen)]
    listeners += syslog_listeners(settings, intake, metrics, inflight, sink, reactor, role, deliveries.log)

    def reloader() -> Reloader:  # once every listener is built
        return Reloader(settings, read_settings or (lambda: load_settings(config)), catalog,
                        {listener.name: listener.tls for listener in listeners if listener.tls is not None},
                        cef, admission, lambda load: deferToThreadPool(reactor, reactor.getThreadPool(), load))

    if role is not None:
        snapshots = snapshot_path(Path(settings.state_dir), role.index)
        return InboxDaemon(store, sink, intake, cache, metrics, inflight,
                           [store.invalidation_watcher(cache.invalidate, reactor), push_stats,
                            idempotency_settler(intake, reactor),
                            Periodic("metrics-snapshot", lambda: write_snapshot(metrics.registry, snapshots),
                                     reactor, METRICS_SNAPSHOT_INTERVAL)],
                           listeners, reloader(), reactor)
    supervisor = (WorkerSupervisor(settings.workers - 1, list(listeners), limiter, ack_channels,
                                   Path(settings.state_dir), config, reactor) if settings.workers > 1 else None)
    exposed = MergedMetrics(metrics.registry, supervisor.snapshots) if supervisor else metrics.registry
    if settings.metrics.listen:
        metrics_site = Site(MetricsResource(exposed), reactor=reactor)
        metrics_site.log = lambda request: None  # type: ignore[method-assign]
        listeners += [Listener(desc, metrics_site, reactor, numbered("metrics", i))
                      for i, desc in enumerate(settings.metrics.listen)]
    if settings.admin.listen:
        admin = TokenAdmin(store, reactor, catalog.allowed, cache.invalidate)  # catalog reloads in place
        api_key = read_or_create(settings.state_path(settings.admin.api_key_file),
                                 lambda: secrets.token_urlsafe(32).encode("ascii"), "admin API key")
        status = StatusSources(lambda: listeners, sink, store, rates, recent_errors, reactor, exposed,
                               lambda: reloads.last, TokenStoreView(health, metrics.token_store, cache),
                               delivery_desk(deps, admin))
        admin_site = InboxSite(build_admin_resource(admin, store, cache, api_key, deps, status),
                               max_body_bytes=64 * 1024, on_too_large=lambda path: None, reactor=reactor,
                               limits=limits, on_refused=metrics.http_refusal)
        listeners += [Listener(desc, admin_site, reactor, numbered("admin", i))
                      for i, desc in enumerate(settings.admin.listen)]
    watchdog = systemd.watchdog_interval()
    workers: list[Service] = [*([systemd.watchdog(reactor, watchdog)] if watchdog else []),
                              store.invalidation_watcher(cache.invalidate, reactor),
                              Periodic("idempotency-sweeper",
                                       lambda: store.sweep_idempotency_keys(reactor.seconds()), reactor, 300.0),
                              idempotency_settler(intake, reactor),
                              push_stats,
                              ImapPoller(store, catalog, pipeline, metrics, settings.imap, reactor, reactor)]
    reloads = Reloads(reloader(), reactor, metrics.reloads, lambda: listening(listeners), supervisor)
    return InboxDaemon(store, sink, intake, cache, metrics, inflight, workers, listeners, reloads.reloader, reactor,
                       supervisor, reloads)


#: seconds between a worker's metrics snapshots (Prometheus scrapes every 15 s or more)
METRICS_SNAPSHOT_INTERVAL = 2.0
#: seconds between attempts to settle the idempotency claims the store did not answer for: well
#: within a sender's Retry-After, so its retry is not refused with 409 once the store answers
IDEMPOTENCY_SETTLE_INTERVAL = 2.0


def idempotency_settler(intake: Intake, clock: IReactorTime) -> Periodic:
    return Periodic("idempotency-settler", intake.idempotency.settle_unsettled, clock,
                    IDEMPOTENCY_SETTLE_INTERVAL, now=False)
