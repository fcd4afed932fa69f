"""
Reloading on SIGHUP, all or nothing.

A reload changes these parts and nothing else (every other setting takes a restart):

  - the templates (C{templates.directories}) and the allowed ids (C{templates.allowed});
  - the TLS material of every C{ssl:} listener (key, certificate, chain, DH parameters, a syslog
    listener's client CA), re-read from the files the listener was started with;
  - the C{cef} section (tenant, template, shared secret and its header, allowlist, trusted proxies);
  - C{http.rate_limit_per_min}.

It runs in two steps. L{Reloader.load} reads the config file and every part, in a thread, and checks
them against each other (an allowed id must be loaded; C{cef.template} and the syslog listeners'
templates must be loaded and allowed) without touching anything that serves; the first failure
rejects the whole reload as a L{ReloadRejected} naming the part. L{Reloader.apply} then puts every
part in force in one call on the reactor thread, and cannot fail, so a request sees the old
configuration or the new one, never half of each.

With C{workers: N} the daemon decides for every process, in two phases over the control channel
(L{aisoc_inboxd.workers.supervisor.WorkerSupervisor.reload}): each worker loads the new configuration
itself and answers its L{fingerprint}; only when every worker loaded exactly what the daemon loaded
does any process apply it. A worker (re)started later must show the fingerprint the daemon serves
before it may serve. So no process ever serves a configuration another does not.
"""
from __future__ import annotations

import dataclasses
import hashlib
import time
from dataclasses import dataclass
from typing import Any, Callable, Generic, Mapping, Protocol, TypeVar

from prometheus_client import Counter
from twisted.internet.defer import Deferred, DeferredLock
from twisted.internet.interfaces import IReactorTime
from twisted.logger import LogLevel, Logger

from aisoc_inboxd import systemd
from aisoc_inboxd.catalog import TemplateCatalog
from aisoc_inboxd.config import CefSettings, ConfigError, Settings
from aisoc_inboxd.gc_pauses import refreeze
from aisoc_inboxd.normalizer import TemplateError
from aisoc_inboxd.tls import ReloadableTLS, TlsConfigError, TlsMaterial

_log = Logger()

T = TypeVar("T")


class ReloadRejected(Exception):
    """
    A part of the new configuration cannot be used: C{part} names it, C{reason} says why (never a
    secret), on one line (a YAML error spans several).
    """

    def __init__(self, part: str, reason: str) -> None:
        reason = " ".join(reason.split())
        super().__init__(f"{part}: {reason}")
        self.part = part
        self.reason = reason


class Replaceable(Generic[T]):
    """
    A part's value in force, for holders that read it at each use; a reload puts the new one in its place.
    """

    def __init__(self, value: T) -> None:
        self.value = value


class Limiter(Protocol):
    def set_rate(self, per_minute: int) -> None: ...


def with_reloadable(base: Settings, source: Settings) -> Settings:
    """
    C{base} with the keys a reload applies (templates, cef, http.rate_limit_per_min) taken from C{source}.
    """
    return dataclasses.replace(base, templates=source.templates, cef=source.cef,
                               http=dataclasses.replace(base.http, rate_limit_per_min=source.http.rate_limit_per_min))


def changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """
    The dotted keys whose values differ between two settings (a list or mapping counts as one key).
    """
    if not dataclasses.is_dataclass(old) or type(old) is not type(new):
        return [] if old == new else [prefix]
    changed: list[str] = []
    for f in dataclasses.fields(old):
        key = f"{prefix}.{f.name}" if prefix else f.name
        changed += changed_keys(getattr(old, f.name), getattr(new, f.name), key)
    return changed


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def fingerprint(settings: Settings, catalog: TemplateCatalog, tls: Mapping[str, TlsMaterial]) -> dict[str, str]:
    """
    A digest per part of a configuration in force, by the part's name: two processes serve the same
    configuration when their digests agree. C{settings} covers every key a reload does not apply.
    """
    return {"settings": _sha256(repr(with_reloadable(settings, Settings()))),
            "templates": catalog.digest(),
            "cef": _sha256(repr(settings.cef)),
            "http.rate_limit_per_min": str(settings.http.rate_limit_per_min),
            **{f"{name} certificate": material.digest for name, material in tls.items()}}


def differing_parts(ours: Mapping[str, str], theirs: Mapping[str, str]) -> list[str]:
    """
    The parts of C{theirs} (a worker's, which has no metrics or admin listener) that C{ours} lacks or has otherwise.
    """
    return [part for part in sorted(theirs) if ours.get(part) != theirs[part]]


@dataclass(frozen=True)
class Loaded:
    """
    A new configuration, loaded and checked but not in force.

    @ivar settings: the settings in force once applied: the running ones with the reloadable keys of the file.
    @ivar restart_only: keys the file changes that a reload does not apply.
    """

    settings: Settings
    catalog: TemplateCatalog
    tls: Mapping[str, TlsMaterial]
    restart_only: list[str]

    def fingerprint(self) -> dict[str, str]:
        return fingerprint(self.settings, self.catalog, self.tls)


class Reloader:
    """
    The parts one process (the daemon or a worker) reloads: L{load} reads and checks a new
    configuration without touching them, L{apply} puts it in force.

    @param read_settings: reads the config file again, as at start.
    @param tls: the TLS listeners by name.
    @param in_thread: runs the loading off the reactor thread (C{deferToThreadPool}); tests run it inline.
    """

    def __init__(self, settings: Settings, read_settings: Callable[[], Settings], catalog: TemplateCatalog,
                 tls: Mapping[str, ReloadableTLS], cef: Replaceable[CefSettings], limiter: Limiter,
                 in_thread: Callable[[Callable[[], Loaded]], Deferred[Loaded]]) -> None:
        self.settings = settings
        self._read_settings = read_settings
        self._catalog = catalog
        self._tls = dict(tls)
        self._cef = cef
        self._limiter = limiter
        self._in_thread = in_thread

    def fingerprint(self) -> dict[str, str]:
        """
        The L{fingerprint} of the configuration in force.
        """
        return fingerprint(self.settings, self._catalog, {name: tls.material for name, tls in self._tls.items()})

    def load(self) -> Deferred[Loaded]:
        """
        The new configuration, loaded off the reactor thread; fails with L{ReloadRejected}.
        """
        return self._in_thread(self._load)

    def _load(self) -> Loaded:
        try:
            new = self._read_settings()
        except ConfigError as e:
            raise ReloadRejected("config", str(e)) from None
        settings = with_reloadable(self.settings, new)
        try:
            catalog = TemplateCatalog.load_to_serve(settings.templates.directories, settings.templates.allowed)
        except (TemplateError, ConfigError) as e:
            raise ReloadRejected("templates", str(e)) from None
        try:
            catalog.check_in_use(settings)
        except ConfigError as e:
            raise ReloadRejected("config", str(e)) from None
        tls: dict[str, TlsMaterial] = {}
        for name, listener in self._tls.items():
            try:
                tls[name] = listener.files.load()
            except TlsConfigError as e:
                raise ReloadRejected(f"{name} certificate", str(e)) from None
        return Loaded(settings, catalog, tls, changed_keys(self.settings, with_reloadable(new, self.settings)))

    def apply(self, loaded: Loaded) -> None:
        """
        Put C{loaded} in force: plain assignments, so nothing can fail half-way; then let the replaced
        catalog be collected (L{refreeze}).
        """
        self.settings = loaded.settings
        self._catalog.replace_with(loaded.catalog)
        for name, material in loaded.tls.items():
            self._tls[name].use(material)
        self._cef.value = loaded.settings.cef
        self._limiter.set_rate(loaded.settings.http.rate_limit_per_min)
        _log.info("reload applied: templates {templates}; TLS reloaded for {listeners}; rate limit {rate}/min; "
                  "CEF route {cef}", templates=", ".join(self._catalog.ids()),
                  listeners=", ".join(self._tls) or "no listener",
                  rate=loaded.settings.http.rate_limit_per_min,
                  cef=f"for tenant {loaded.settings.cef.tenant}" if loaded.settings.cef.tenant else "disabled")
        refreeze()


@dataclass(frozen=True)
class ReloadOutcome:
    """
    How a reload ended, for the status page: C{at} (epoch seconds), and the rejection (C{"part: reason"}) if any.
    """

    at: float
    rejection: str | None = None

    @property
    def applied(self) -> bool:
        return self.rejection is None

    @property
    def result(self) -> str:
        return "applied" if self.applied else "rejected"


class Workers(Protocol):
    """
    The daemon's worker processes, as a reload sees them (L{WorkerSupervisor}).
    """

    async def reload(self, fingerprint: Mapping[str, str], apply: Callable[[], None]) -> None: ...


class Reloads:
    """
    The daemon's reloads, one at a time: a SIGHUP during one makes one more after it. Each is told
    to the service manager (C{RELOADING=1}, then C{READY=1} either way), counted in
    C{aisoc_reload_total{result}} and kept (L{last}) for the status page.

    @param status: the service manager's C{STATUS=} line before the last reload's result.
    """

    def __init__(self, reloader: Reloader, clock: IReactorTime, counter: Counter, status: Callable[[], str],
                 workers: Workers | None = None) -> None:
        self.reloader = reloader
        self._clock = clock
        self._counter = counter
        self._status = status
        self._workers = workers
        self._lock = DeferredLock()
        self._queued = False
        #: the last reload's outcome; None before the first
        self.last: ReloadOutcome | None = None
        for result in ("applied", "rejected"):
            counter.labels(result)

    def request(self) -> None:
        """
        A SIGHUP: reload after the reload running, if any; more SIGHUPs meanwhile add no more.
        """
        if not self._queued:
            self._queued = True
            Deferred.fromCoroutine(self.reload())

    async def reload(self) -> ReloadOutcome:
        """
        Load everything, then apply it everywhere or nowhere. Never fails: a rejection is logged.
        """
        async with self._lock:
            self._queued = False
            systemd.notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
            outcome = await self._reload()
            self.last = outcome
            self._counter.labels(outcome.result).inc()
            stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(outcome.at))
            said = (f"last reload applied at {stamp}" if outcome.applied else
                    f"last reload rejected at {stamp} ({outcome.rejection}); the previous configuration keeps serving")
            systemd.notify(f"READY=1\nSTATUS={self._status()}; {said}")
            return outcome

    async def _reload(self) -> ReloadOutcome:
        try:
            loaded = await self.reloader.load()
            if self._workers is None:
                self.reloader.apply(loaded)
            else:
                await self._workers.reload(loaded.fingerprint(), lambda: self.reloader.apply(loaded))
        except ReloadRejected as e:
            _log.error("reload rejected, the previous configuration keeps serving: {part}: {reason}",
                       part=e.part, reason=e.reason)
            return ReloadOutcome(self._clock.seconds(), str(e))
        except Exception as e:
            _log.failure("reload rejected, the previous configuration keeps serving: unexpected error (a bug)",
                         level=LogLevel.error)
            return ReloadOutcome(self._clock.seconds(), f"unexpected error: {type(e).__name__}")
        if loaded.restart_only:
            _log.warn("the config file also changes {keys}, which take effect only after a restart",
                      keys=", ".join(loaded.restart_only))
        return ReloadOutcome(self._clock.seconds())
