"""
The daemon as a service: the store, the sink, the background services and the listeners one
process runs (composed by L{aisoc_inboxd.wiring.build_daemon}), started and stopped in order.

Start order: store and sink start, the schema is upgraded, and only then do the listeners bind, so
nothing is accepted that could not be stored. Stop order is the reverse, one child at a time:
listeners close, in-flight requests finish (bounded), then the sink flushes and the store closes.
"""
from __future__ import annotations

import signal
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger

from aisoc_inboxd import systemd
from aisoc_inboxd.inflight import InFlight
from aisoc_inboxd.intake.intake import Intake
from aisoc_inboxd.listeners import DatagramListener, DrainInFlight, Listener, listening
from aisoc_inboxd.metrics import Metrics
from aisoc_inboxd.reload import Reloader, Reloads
from aisoc_inboxd.sinks import EventSink
from aisoc_inboxd.store import Store
from aisoc_inboxd.tokens import TokenCache
from aisoc_inboxd.workers.supervisor import WorkerSupervisor

_log = Logger()


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


class InboxDaemon(SequentialMultiService):
    """
    One process, the daemon or a worker: C{started} fires once every listener is bound (or fails,
    after which the reactor is stopped).
    """

    def __init__(self, store: Store, sink: EventSink, intake: Intake, token_cache: TokenCache,
                 metrics: Metrics, inflight: InFlight, background: list[Service],
                 listeners: list[Listener | DatagramListener], reloader: Reloader,
                 reactor: Any, supervisor: WorkerSupervisor | None = None, reloads: Reloads | None = None) -> None:
        """
        @param background: services that need the upgraded store (cache invalidation, sweeps, pollers);
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
        self._background = background
        self._reactor = reactor
        self.supervisor = supervisor
        for child in (store, sink, DrainInFlight(inflight), *background, *([supervisor] if supervisor else []),
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
        Start the store and the sink, upgrade the schema, then start the background services and bind. Any
        failure is one log line and a reactor stop (at once, or as soon as it runs): the process
        exits instead of running deaf or hanging on the threads already started. C{started}
        fails with it; the process entry points (L{aisoc_inboxd.tap.compose}) consume that.
        """
        try:
            for child in self:
                if child not in self.listeners and child not in self._background and child is not self.supervisor:
                    child.startService()
            version = await self.store.upgrade()
            _log.info("store ready at schema version {version}", version=version)
            for service in self._background:
                service.startService()
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
