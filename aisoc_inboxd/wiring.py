"""
Wiring: the daemon, or one of its worker processes, composed from settings.

L{build_daemon} is the one composition; L{aisoc_inboxd.tap} and L{aisoc_inboxd.workers.main} call
it. It puts together small builders, one a part (store, sink, intake, web, syslog, metrics, admin,
supervisor, reloads, background services), and each builder takes the worker role, None in the
daemon: what a worker does differently is decided part by part, by that parameter, never by a
second composition.
"""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from prometheus_client.registry import Collector
from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.web.server import Site

from aisoc_inboxd import systemd
from aisoc_inboxd.activity import EventRates, RecentErrors
from aisoc_inboxd.catalog import TemplateCatalog
from aisoc_inboxd.config import CefSettings, Settings, SyslogListenerSettings, load_settings, per_process
from aisoc_inboxd.deliveries import DeliveryLog
from aisoc_inboxd.hec_acks import AckChannels, LocalAcks, RemoteAcks
from aisoc_inboxd.imap import ImapPoller
from aisoc_inboxd.inflight import InFlight
from aisoc_inboxd.intake.idempotency import Idempotency
from aisoc_inboxd.intake.intake import Intake
from aisoc_inboxd.intake.ratelimit import LeasedRateLimiter, RateLimiter
from aisoc_inboxd.keyfiles import read_or_create
from aisoc_inboxd.listeners import DRAIN_TIMEOUT, DatagramListener, Listener, listening
from aisoc_inboxd.metrics import MergedMetrics, Metrics, MetricsResource
from aisoc_inboxd.periodic import Periodic
from aisoc_inboxd.pipeline import Pipeline
from aisoc_inboxd.push_stats import PushStatsRecorder
from aisoc_inboxd.reload import Reloader, Reloads, Replaceable
from aisoc_inboxd.service import InboxDaemon
from aisoc_inboxd.sinks import EventSink, ISaturating
from aisoc_inboxd.store import Store
from aisoc_inboxd.store.health import StoreHealth
from aisoc_inboxd.store.secrets import SecretBox
from aisoc_inboxd.syslog.protocol import SyslogDatagramProtocol, SyslogIntake, SyslogStreamFactory
from aisoc_inboxd.deliveries import FrameSamples
from aisoc_inboxd.tokens import LookupBudget, TokenAdmin, TokenCache, TokenResolver
from aisoc_inboxd.vendors import VendorGate, build_vendor_gate
from aisoc_inboxd.web.clients import ClientAddresses
from aisoc_inboxd.web.delivery_desk import DeliveryPeer
from aisoc_inboxd.web.hec import HecDeps
from aisoc_inboxd.web.recorder import DeliveryRecorder
from aisoc_inboxd.web.routes import OnReply
from aisoc_inboxd.web.site import InboxSite, channel_limits, inbox_site
from aisoc_inboxd.web.status import StatusSources, TokenStoreView
from aisoc_inboxd.web.tree import WebDeps, build_admin_resource, build_root_resource, delivery_desk
from aisoc_inboxd.workers.role import WorkerRole
from aisoc_inboxd.workers.supervisor import WorkerSupervisor, snapshot_path, write_snapshot

_log = Logger()

#: seconds between a worker's metrics snapshots (Prometheus scrapes every 15 s or more)
METRICS_SNAPSHOT_INTERVAL = 2.0
#: seconds between attempts to settle the idempotency claims the store did not answer for: well
#: within a sender's Retry-After, so its retry is not refused with 409 once the store answers
IDEMPOTENCY_SETTLE_INTERVAL = 2.0

AnyListener = Listener | DatagramListener


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
    store = build_store(settings, reactor, health)
    sink = build_sink(settings, reactor, metrics, role)
    intake = build_intake(settings, catalog, store, sink, metrics, reactor, role)
    inflight = InFlight(reactor)
    push_stats = PushStatsRecorder(store, reactor, lambda: inflight.drained(DRAIN_TIMEOUT))
    recent_errors = RecentErrors(reactor)
    cef = Replaceable(settings.cef)
    ack_channels = AckChannels.build(settings.hec, reactor)
    deliveries = DeliveryRecorder(role.deliveries if role else DeliveryLog(settings.deliveries, processes=settings.workers), reactor)
    supervisor: WorkerSupervisor | None = None  # built below, once the listeners it serves are
    web = build_web(settings, intake.intake, metrics, inflight, (push_stats.replied, recent_errors.replied),
                    cef, vendors or build_vendor_gate(settings.vendors, reactor), ack_channels, reactor, role,
                    deliveries, lambda: supervisor.serving() if supervisor else ())
    served = [*web.listeners,
              *build_syslog(settings, intake.intake, metrics, inflight, sink, reactor, role, deliveries.log)]
    supervisor = build_supervisor(settings, served, intake.limiter, ack_channels, config, reactor, role)
    exposed = MergedMetrics(metrics.registry, supervisor.snapshots) if supervisor else metrics.registry
    listeners: list[AnyListener] = [*served, *build_metrics(settings, exposed, reactor, role)]
    status = StatusSources(lambda: listeners, sink, store, intake.rates, recent_errors, reactor, exposed,
                           lambda: reloads.last if reloads else None,
                           TokenStoreView(health, metrics.token_store, intake.cache), delivery_desk(web.deps, store))
    listeners += build_admin(settings, catalog, store, intake.cache, web.deps, status, reactor, role)
    reloader = build_reloader(settings, catalog, listeners, cef, intake.limiter, reactor,
                              read_settings or (lambda: load_settings(config)))
    reloads = build_reloads(reloader, metrics, listeners, supervisor, reactor, role)
    background = build_background(settings, store, intake, push_stats, metrics, reactor, role)
    return InboxDaemon(store, sink, intake.intake, intake.cache, metrics, inflight, background, listeners, reloader,
                       reactor, supervisor, reloads)


def build_store(settings: Settings, reactor: Any, health: StoreHealth | None = None) -> Store:
    """
    The token store, not started: PostgreSQL with C{database.dsn}, else SQLite in the state
    directory. Every process has its own connections (the command line too).

    @param health: told how the store's calls go (the daemon's feeds the status page and metrics).
    """
    box = SecretBox.from_key_file(settings.state_path(settings.secret_key_file))
    database = settings.database
    if database.dsn:
        from aisoc_inboxd.store.postgres import PostgresStore

        return PostgresStore(database.dsn, box, reactor, database, health)
    from aisoc_inboxd.store.sqlite import SqliteStore

    return SqliteStore(str(settings.state_path("inboxd.sqlite3")), box, reactor, database.call_timeout, health)


def build_sink(settings: Settings, reactor: Any, metrics: Metrics, role: WorkerRole | None) -> EventSink:
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


@dataclass(frozen=True)
class IntakeParts:
    """
    The intake and what other parts share of it: the token cache (which the admin API and the
    store's invalidations empty), the rate limiter (whose rate a reload sets; the daemon's serves
    the workers' leases), the publish step (IMAP's way in) and the event rates (the status page).
    """

    intake: Intake
    cache: TokenCache
    limiter: RateLimiter | LeasedRateLimiter
    pipeline: Pipeline
    rates: EventRates


def build_intake(settings: Settings, catalog: TemplateCatalog, store: Store, sink: EventSink, metrics: Metrics,
                 reactor: Any, role: WorkerRole | None) -> IntakeParts:
    """
    Tokens resolved through a cache, the rate limit (a worker leases its share of the daemon's),
    idempotency and the publish step into C{sink}.
    """
    cache_settings = settings.token_cache
    cache = TokenCache(reactor, ttl=cache_settings.ttl, negative_ttl=cache_settings.negative_ttl,
                       max_size=cache_settings.max_size, negative_max_size=cache_settings.negative_max_size,
                       on_size=metrics.token_cache_size.set, on_negative_size=metrics.token_store.unknown_cached.set)
    budget = LookupBudget(reactor, cache_settings.unknown_lookups_per_ip_per_sec)
    http = settings.http
    rates = EventRates(reactor)
    pipeline = Pipeline(sink, metrics, rates.published)
    limiter = (LeasedRateLimiter(reactor, http.rate_limit_per_min, role.lease) if role
               else RateLimiter(reactor, http.rate_limit_per_min))
    intake = Intake(TokenResolver(store, cache, budget, metrics.token_store), catalog, pipeline, limiter,
                    Idempotency(store, reactor, metrics), reactor)
    return IntakeParts(intake, cache, limiter, pipeline, rates)


@dataclass(frozen=True)
class Web:
    """
    The HTTP listeners and what their routes are built from (the admin listener's health
    endpoints use it too).
    """

    listeners: list[Listener]
    deps: WebDeps


def build_web(settings: Settings, intake: Intake, metrics: Metrics, inflight: InFlight,
              observers: Sequence[OnReply], cef: Replaceable[CefSettings], vendors: VendorGate,
              ack_channels: AckChannels, reactor: Any, role: WorkerRole | None,
              deliveries: DeliveryRecorder | None = None,
              delivery_peers: Callable[[], Iterable[DeliveryPeer]] = tuple) -> Web:
    """
    One HTTP listener per C{http.listen} entry, all serving one site; a worker serves the daemon's
    sockets, and its HEC routes ask the daemon's C{ack_channels} across the control channel.

    @param observers: told of every inbox route's reply (push stats, the status page's recent errors).
    @param cef: the token-less CEF route's settings, which a reload replaces.
    @param ack_channels: the daemon's HEC indexer acks, kept for every process.
    @param deliveries: keeps this process's recent deliveries; C{delivery_peers} are the worker
        processes whose own the admin API reads with them.
    """
    http = settings.http
    acks = (RemoteAcks(reactor, settings.hec.channel_idle_timeout, role.acks) if role
            else LocalAcks(ack_channels))
    deps = WebDeps(intake=intake, metrics=metrics, inflight=inflight, max_body_bytes=http.max_body_bytes,
                   max_events=http.max_events_per_request,
                   observers=tuple(observers), vendors=vendors, hec=HecDeps(settings.hec, acks), cef=cef,
                   clients=ClientAddresses(http.trusted_proxies),
                   deliveries=deliveries, delivery_peers=delivery_peers)
    site = inbox_site(build_root_resource(deps), http, metrics, reactor)
    names = [numbered("http", i) for i in range(len(http.listen))]
    return Web([Listener(description, site, reactor, name, inherited_fd=role and role.socket(name))
                for name, description in zip(names, http.listen)], deps)


def build_syslog(settings: Settings, intake: Intake, metrics: Metrics, inflight: InFlight, sink: EventSink,
                 reactor: Any, role: WorkerRole | None, deliveries: DeliveryLog | None = None) -> list[AnyListener]:
    """
    One listener per C{syslog.listeners} entry (their templates were checked with the catalog's
    L{TemplateCatalog.check_in_use}); a worker serves the daemon's sockets. A sink that can be
    saturated (L{ISaturating}: the Kafka sink) pauses TCP reading too. Each keeps its last frames
    in C{deliveries}, when given.
    """
    saturation = ISaturating(sink, None)
    built: list[AnyListener] = []
    for entry in settings.syslog.listeners:
        samples = FrameSamples(deliveries, entry.name, entry.tenant) if deliveries else None
        listener = SyslogIntake(entry, intake, metrics.syslog, inflight,
                                per_process(settings.syslog.max_in_flight_events, settings.workers),
                                saturation, settings.syslog.idle_timeout_of(entry), samples)
        name = f"syslog-{entry.name}"
        built.append(_syslog_listener(entry, listener, reactor, name, role and role.socket(name),
                                      settings.syslog.receive_buffer_of(entry)))
    return built


def _syslog_listener(entry: SyslogListenerSettings, listener: SyslogIntake, reactor: Any, name: str,
                     inherited_fd: int | None, receive_buffer_bytes: int) -> AnyListener:
    if entry.udp_port is not None:
        return DatagramListener(entry.udp_port, entry.udp_interface, SyslogDatagramProtocol(listener, reactor),
                                reactor, name, inherited_fd, receive_buffer_bytes)
    assert entry.endpoint is not None
    client_ca = Path(entry.client_ca_file) if entry.verify_client and entry.client_ca_file else None
    return Listener(entry.endpoint, SyslogStreamFactory(listener, reactor), reactor, name, client_ca, inherited_fd)


def build_supervisor(settings: Settings, served: list[AnyListener], limiter: RateLimiter | LeasedRateLimiter,
                     ack_channels: AckChannels, config: Path | None, reactor: Any,
                     role: WorkerRole | None) -> WorkerSupervisor | None:
    """
    The daemon's worker processes (C{workers:} over 1): they serve the sockets of C{served}, lease
    rate limits from the daemon's C{limiter} and ask its C{ack_channels}. A worker supervises none.
    """
    if role is not None or settings.workers < 2:
        return None
    assert isinstance(limiter, RateLimiter)  # the daemon's is the bucket itself, never a lease
    return WorkerSupervisor(settings.workers - 1, list(served), limiter, ack_channels, Path(settings.state_dir),
                            config, reactor)


def build_metrics(settings: Settings, exposed: Collector, reactor: Any, role: WorkerRole | None) -> list[Listener]:
    """
    The C{/metrics} listeners, serving C{exposed} (every process's metrics, with workers); only the
    daemon has them.
    """
    if role is not None:
        return []
    site = Site(MetricsResource(exposed), reactor=reactor)
    site.log = lambda request: None  # type: ignore[method-assign]
    return [Listener(description, site, reactor, numbered("metrics", i))
            for i, description in enumerate(settings.metrics.listen)]


def build_admin(settings: Settings, catalog: TemplateCatalog, store: Store, cache: TokenCache, deps: WebDeps,
                status: StatusSources, reactor: Any, role: WorkerRole | None) -> list[Listener]:
    """
    The admin listeners: the token API, the health endpoints and the status page, behind the admin
    key (created on first use). Only the daemon has them.
    """
    if role is not None or not settings.admin.listen:
        return []
    admin = TokenAdmin(store, reactor, catalog.allowed, cache.invalidate)  # catalog reloads in place
    api_key = read_or_create(settings.state_path(settings.admin.api_key_file),
                             lambda: secrets.token_urlsafe(32).encode("ascii"), "admin API key")
    site = InboxSite(build_admin_resource(admin, store, cache, api_key, deps, status),
                     max_body_bytes=64 * 1024, on_too_large=lambda path: None, reactor=reactor,
                     limits=channel_limits(settings.http), on_refused=deps.metrics.http_refusal)
    return [Listener(description, site, reactor, numbered("admin", i))
            for i, description in enumerate(settings.admin.listen)]


def build_reloader(settings: Settings, catalog: TemplateCatalog, listeners: Sequence[AnyListener],
                   cef: Replaceable[CefSettings], limiter: RateLimiter | LeasedRateLimiter, reactor: Any,
                   read_settings: Callable[[], Settings]) -> Reloader:
    """
    What a reload changes in this process: the templates, the CEF route's settings, the rate, and the
    certificates of its TLS listeners (all of them built by now).
    """
    return Reloader(settings, read_settings, catalog,
                    {listener.name: listener.tls for listener in listeners if listener.tls is not None},
                    cef, limiter, lambda load: deferToThreadPool(reactor, reactor.getThreadPool(), load))


def build_reloads(reloader: Reloader, metrics: Metrics, listeners: Sequence[AnyListener],
                  supervisor: WorkerSupervisor | None, reactor: Any, role: WorkerRole | None) -> Reloads | None:
    """
    The reloads SIGHUP asks for, run by the daemon for itself and its workers; a worker has none
    (it reloads when the daemon tells it to).
    """
    if role is not None:
        return None
    return Reloads(reloader, reactor, metrics.reloads, lambda: listening(listeners), supervisor)


def build_background(settings: Settings, store: Store, intake: IntakeParts, push_stats: PushStatsRecorder,
                     metrics: Metrics, reactor: Any, role: WorkerRole | None) -> list[Service]:
    """
    The services that need the upgraded store: every process follows token invalidations, settles
    idempotency claims and records push stats; the daemon alone pings the watchdog, sweeps expired
    idempotency keys and polls IMAP; a worker snapshots its metrics for the daemon's C{/metrics}.
    """
    shared: list[Service] = [store.invalidation_watcher(intake.cache.invalidate, reactor),
                             idempotency_settler(intake.intake, reactor), push_stats]
    if role is not None:
        snapshots = snapshot_path(Path(settings.state_dir), role.index)
        return [*shared, Periodic("metrics-snapshot", lambda: write_snapshot(metrics.registry, snapshots),
                                  reactor, METRICS_SNAPSHOT_INTERVAL)]
    watchdog = systemd.watchdog_interval()
    return [*([systemd.watchdog(reactor, watchdog)] if watchdog else []), *shared,
            Periodic("idempotency-sweeper", lambda: store.sweep_idempotency_keys(reactor.seconds()), reactor, 300.0),
            ImapPoller(store, intake.intake, metrics, settings.imap, reactor, reactor)]


def idempotency_settler(intake: Intake, clock: IReactorTime) -> Periodic:
    return Periodic("idempotency-settler", intake.idempotency.settle_unsettled, clock,
                    IDEMPOTENCY_SETTLE_INTERVAL, now=False)


def numbered(kind: str, index: int) -> str:
    """
    Service names must be unique: the first listener of a kind is C{http}, the next C{http-2}, …
    """
    return kind if index == 0 else f"{kind}-{index + 1}"
