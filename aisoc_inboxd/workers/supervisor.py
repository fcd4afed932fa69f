"""
The daemon's side of its worker processes: spawn them once its listeners are bound, hand each the
listening sockets and a control channel, let each serve only the configuration the daemon serves,
run reloads in every process at once, re-emit their log events, respawn one that dies, and stop
them (each drains like the daemon does) before the daemon's own sink stops.
"""
from __future__ import annotations

import itertools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, DeferredLock, TimeoutError
from twisted.internet.error import ConnectionDone, ConnectionLost, ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import InvalidLogLevelError, Logger, LogLevel, globalLogPublisher
from twisted.python.failure import Failure

from aisoc_inboxd import logs
from aisoc_inboxd.hec_acks import AckChannels
from aisoc_inboxd.metrics import snapshot
from aisoc_inboxd.intake.ratelimit import RateLimiter
from aisoc_inboxd.reload import ReloadRejected, differing_parts
from aisoc_inboxd.workers.control import WORKER_FD, DaemonSide, Refused, adopt, socket_pair

_log = Logger()

#: seconds the daemon waits for a new worker to serve before start-up fails
READY_TIMEOUT = 60.0
#: seconds a worker has to answer a reload: to load it (else the reload is rejected) or to apply it
#: (else the worker is replaced)
RELOAD_TIMEOUT = 30.0
#: seconds a worker has to drain and exit after SIGTERM before it is killed
STOP_TIMEOUT = 45.0
#: respawn delays after a worker dies: doubling from the first to the last
RESPAWN_DELAYS = (1.0, 30.0)
#: variables a worker must not inherit: only the daemon talks to the service manager
_DAEMON_ONLY = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID")


def log_arguments() -> list[str]:
    """
    How a worker logs: in the daemon's format and at its level once the daemon's log began, so the
    daemon writes the worker's lines through; else (a supervisor in a test) as JSON it publishes.
    """
    output = logs.output
    if output is None:
        return ["--log-format", "json", "--log-level", "info"]
    return ["--log-format", output.format, "--log-level", output.level]


def _is_log_line(line: bytes, format: str) -> bool:
    """
    Whether C{line} is a line of the daemon's log C{format} (text: a time stamp, or a tab before the
    continuation of a message; JSON: an object opening with its time), not something a library printed.
    """
    if format == "json":
        return line.startswith(b'{"time":')
    return line[:1].isdigit() or line.startswith(b"\t")


class WorkerCrashed(Exception):
    pass


def snapshot_path(state_dir: Path, index: int) -> Path:
    """
    Where worker C{index} keeps the snapshot of its metrics the daemon's /metrics adds up.
    """
    return state_dir / "workers" / f"metrics-{index}.json"


def write_snapshot(registry: Any, path: Path) -> None:
    """
    Replace a worker's metrics snapshot (L{snapshot} of C{registry}) atomically, so the daemon
    never reads half of one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(snapshot(registry)), encoding="utf-8")
    partial.replace(path)


class WorkerProcess(ProcessProtocol):
    """
    One worker: its log events are published into the daemon's log with C{log_system} set to
    C{worker-N}; C{ready} fires once it serves, C{ended} when it has exited. It takes part in
    reloads once it C{joined} (showed the configuration the daemon serves).
    """

    def __init__(self, index: int, control: DaemonSide) -> None:
        self.index = index
        self.control = control
        self.ready: Deferred[None] = Deferred()
        self.ended: Deferred[BaseException] = Deferred()  # fires (never fails) with why it ended
        self.served = False
        self.joined = False
        self._partial = b""

    @property
    def system(self) -> str:
        return f"worker-{self.index}"

    def outReceived(self, data: bytes) -> None:
        complete, newline, self._partial = (self._partial + data).rpartition(b"\n")
        if newline:
            self._lines(complete.split(b"\n"))

    def _lines(self, lines: list[bytes]) -> None:
        """
        Log the worker's lines: written through as they are when the daemon's log began (the worker
        formats them in the daemon's format and level, L{log_arguments}), else published as events.
        A line that is no log line (what a library printed) is published without a level, so the log
        drops it.
        """
        output, through = logs.output, []
        for line in lines:
            if output is not None and _is_log_line(line, output.format):
                through.append(line)
            elif line:
                self._publish(line)
        if through:
            output.write_through(b"\n".join(through).decode("utf-8", "replace") + "\n")  # type: ignore[union-attr]

    def _publish(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace")
        try:
            record = json.loads(text)
            level = LogLevel.levelWithName(record["level"])
        except (ValueError, TypeError, KeyError, InvalidLogLevelError):
            event = {"log_format": "{line}", "line": text, "log_level": None, "log_namespace": __name__}
        else:
            event = {**record, "log_format": "{message}", "log_level": level,
                     "log_namespace": record.get("namespace", "-"), "log_time": time.time()}
        event["log_system"] = self.system
        globalLogPublisher(event)

    def errReceived(self, data: bytes) -> None:
        # what a worker prints before its logging starts (an import error, a traceback)
        for line in data.decode("utf-8", "replace").splitlines():
            _log.error("{system}: {line}", system=self.system, line=line)

    def processEnded(self, reason: Failure) -> None:
        self._lines([self._partial])
        if not self.ready.called:
            self.ready.errback(WorkerCrashed(f"{self.system} exited before serving ({_describe(reason.value)}); "
                                             f"its own lines above say why"))
        self.ended.callback(reason.value)


class WorkerSupervisor(Service):
    """
    Keeps C{count} worker processes running on the daemon's listening sockets.

    @param listeners: the daemon's shared listeners, bound before L{spawn_all}; each has C{name}
        and C{port} (an L{IListeningPort} with C{fileno()}).
    @param config: the config file the workers read, as the daemon did (the environment they
        inherit applies the same overrides); None for the embedded default.
    @param limiter: the tenants' rate limits and C{acks} the HEC indexer acks, which the daemon
        holds for every process and its workers ask about over their control channels.
    """

    name = "workers"

    def __init__(self, count: int, listeners: Sequence[Any], limiter: RateLimiter, acks: AckChannels,
                 state_dir: Path, config: Path | None, reactor: Any) -> None:
        self._count = count
        self._listeners = listeners
        self._limiter = limiter
        self._acks = acks
        self._state_dir = state_dir
        self._config = config
        self._reactor = reactor
        self._processes: dict[int, WorkerProcess] = {}
        self._delays: dict[int, float] = {}
        #: every worker of the first start served: from then on a worker that ends is replaced
        self._started = False
        self._fingerprint: Callable[[], Mapping[str, str]] = dict
        #: held while a reload runs: a worker joining meanwhile waits for its outcome
        self._reloading = DeferredLock()
        self._generations = itertools.count(1)

    def snapshots(self) -> Iterable[list[Any]]:
        """
        The workers' latest metrics snapshots, for the daemon's /metrics.
        """
        for index in range(1, self._count + 1):
            try:
                yield json.loads(snapshot_path(self._state_dir, index).read_bytes())
            except (OSError, ValueError):
                continue  # not written yet, or a worker being replaced

    def serving(self) -> list[DaemonSide]:
        """
        The control channels of the workers that serve now (to read their recent deliveries).
        """
        return [process.control for process in self._processes.values() if process.served]

    async def spawn_all(self, fingerprint: Callable[[], Mapping[str, str]]) -> None:
        """
        Start every worker and wait until each serves; a worker that exits first fails start-up.

        @param fingerprint: the fingerprint of the configuration the daemon serves now; a worker
            that loaded another does not serve.
        """
        Service.startService(self)
        self._fingerprint = fingerprint
        starting = [self._spawn(index) for index in range(1, self._count + 1)]
        timeout = self._reactor.callLater(READY_TIMEOUT, self._not_ready, starting)
        try:
            for process in starting:
                await process.ready
        finally:
            if timeout.active():
                timeout.cancel()
        self._started = True
        _log.info("{count} worker processes serving beside the daemon", count=self._count)

    def _not_ready(self, starting: list[WorkerProcess]) -> None:
        for process in starting:
            if not process.ready.called:
                process.ready.errback(WorkerCrashed(f"{process.system} did not serve within {READY_TIMEOUT}s"))

    def _spawn(self, index: int) -> WorkerProcess:
        snapshot_path(self._state_dir, index).unlink(missing_ok=True)  # its counters restart at 0
        ours, theirs = socket_pair()
        control = DaemonSide(self._limiter, self._acks, lambda: self._served(process),
                             lambda fingerprint: self._join(process, fingerprint), self._reactor)
        process = WorkerProcess(index, control)
        adopt(self._reactor, ours.fileno(), control)
        ours.close()
        child_fds: dict[int, Any] = {0: "w", 1: "r", 2: "r", WORKER_FD: theirs.fileno()}
        args = [sys.executable, "-m", "aisoc_inboxd.workers.main", "--index", str(index), *log_arguments()]
        if self._config is not None:
            args += ["--config", str(self._config)]
        for fd, listener in enumerate(self._listeners, start=WORKER_FD + 1):
            child_fds[fd] = listener.port.fileno()
            args += ["--socket", f"{listener.name}={fd}"]
        env = {k: v for k, v in os.environ.items() if k not in _DAEMON_ONLY}
        try:
            self._reactor.spawnProcess(process, sys.executable, args, env=env, childFDs=child_fds)
        finally:
            theirs.close()
        self._processes[index] = process
        process.ended.addCallback(self._ended, process)
        return process

    async def _join(self, process: WorkerProcess, theirs: Mapping[str, str]) -> None:
        """
        Let C{process} serve only if it loaded the configuration the daemon serves.
        """
        async with self._reloading:
            differs = differing_parts(self._fingerprint(), theirs)
            if differs:
                _log.error("{system} loaded another configuration than the daemon serves ({parts}), so it does "
                           "not serve: the files changed since the daemon loaded them. Reload (SIGHUP) to apply "
                           "them to every process, or restart for settings a reload does not apply",
                           system=process.system, parts=", ".join(differs))
                raise Refused(f"the daemon serves another configuration ({', '.join(differs)})")
            process.joined = True

    def _served(self, process: WorkerProcess) -> None:
        _log.info("{system} serving (pid {pid})", system=process.system, pid=process.transport.pid)
        process.served = True
        if not process.ready.called:
            process.ready.callback(None)

    def _ended(self, reason: BaseException, process: WorkerProcess) -> None:
        if self._processes.get(process.index) is process:
            del self._processes[process.index]
        if not self.running or not self._started:
            return  # before all served, a worker's end fails the daemon's start: nothing is respawned
        first, last = RESPAWN_DELAYS  # a worker that never served backs off: it will likely fail again
        delay = first if process.served else min(last, self._delays.get(process.index, first / 2) * 2)
        self._delays[process.index] = delay
        _log.error("{system} exited ({reason}); a new one starts in {delay}s", system=process.system,
                   reason=_describe(reason), delay=delay)
        self._reactor.callLater(delay, self._respawn, process.index)

    def _respawn(self, index: int) -> None:
        if self.running and index not in self._processes:
            self._spawn(index).ready.addErrback(lambda f: None)  # its end is logged by _ended

    async def reload(self, fingerprint: Mapping[str, str], apply: Callable[[], None]) -> None:
        """
        Apply a reload the daemon loaded (its C{fingerprint}) in every process, or in none.

        Every worker that joined loads the configuration itself and answers its fingerprint. Unless
        each loaded what the daemon did, they all drop it and L{ReloadRejected} names the first that
        did not. Otherwise C{apply} puts the daemon's in force and, in the same reactor turn, each
        worker is told to apply its own (which cannot fail: it is loaded); one that does not confirm
        is stopped, and its replacement joins with the new configuration. A worker that exits
        meanwhile takes no part: its replacement joins after.
        """
        async with self._reloading:
            generation = next(self._generations)
            joined = [process for process in self._processes.values() if process.joined]
            answers = await DeferredList([self._prepare(process, generation) for process in joined],
                                         consumeErrors=True)
            try:
                for process, (loaded, answer) in zip(joined, answers):
                    if not loaded:
                        if answer.check(ConnectionDone, ConnectionLost):
                            continue
                        raise ReloadRejected(process.system, _refusal(answer))
                    differs = differing_parts(fingerprint, answer)
                    if differs:
                        raise ReloadRejected(process.system, f"{differs[0]}: it loaded other files than the daemon "
                                                             "(they changed during the reload); reload again")
            except ReloadRejected:
                for process in joined:
                    process.control.abort_reload(generation)
                raise
            apply()
            commits = [process.control.commit_reload(generation).addTimeout(RELOAD_TIMEOUT, self._reactor)
                       .addErrback(self._not_applied, process) for process in joined]
            await DeferredList(commits)

    def _prepare(self, process: WorkerProcess, generation: int) -> Deferred[dict[str, str]]:
        return process.control.prepare_reload(generation).addTimeout(RELOAD_TIMEOUT, self._reactor)

    def _not_applied(self, failure: Failure, process: WorkerProcess) -> None:
        if failure.check(ConnectionDone, ConnectionLost):
            return  # it exited: its replacement joins with the new configuration
        _log.error("{system} did not apply the reload ({error}); it is stopped, and its replacement starts with "
                   "the new configuration", system=process.system, error=_refusal(failure))
        process.transport.signalProcess("TERM")

    def stopService(self) -> Deferred[Any]:
        Service.stopService(self)
        running = list(self._processes.values())
        for process in running:
            process.transport.signalProcess("TERM")
        kill = self._reactor.callLater(STOP_TIMEOUT, self._kill, running)
        ended = DeferredList([process.ended for process in running], consumeErrors=True)
        return ended.addBoth(lambda _: kill.cancel() if kill.active() else None)

    def _kill(self, running: list[WorkerProcess]) -> None:
        for process in running:
            if not process.ended.called:
                _log.warn("{system} still draining after {t}s; killed", system=process.system, t=STOP_TIMEOUT)
                process.transport.signalProcess("KILL")


def _refusal(failure: Failure) -> str:
    """
    Why a worker did not load or apply a reload, for the log.
    """
    if failure.check(Refused):
        return str(failure.value)
    if failure.check(TimeoutError):
        return f"it did not answer within {RELOAD_TIMEOUT:g} s"
    return f"{failure.type.__name__}: {failure.value}"


def _describe(reason: BaseException) -> str:
    if isinstance(reason, (ProcessDone, ProcessTerminated)):
        return f"signal {reason.signal}" if reason.signal else f"exit status {reason.exitCode}"
    return str(reason)
