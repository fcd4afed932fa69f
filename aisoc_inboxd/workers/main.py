"""
A worker process, spawned by the daemon's L{WorkerSupervisor}:
C{python -m aisoc_inboxd.workers.main --index N [--config PATH] --socket NAME=FD ...}.

It reads the config as the daemon did and serves the inherited sockets with its own store connection
and sink once the daemon confirmed that it loaded the configuration the daemon serves (it exits
otherwise). It reloads when the daemon says so, never on its own SIGHUP. It logs on stdout in the
daemon's format and level, tagged C{worker-N} (the daemon writes the lines through), and stops
(draining what it accepted) on SIGTERM or when the daemon's control channel closes.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Any

from twisted.logger import Logger
from twisted.python.failure import Failure

from aisoc_inboxd import logs

_log = Logger()


def _socket(text: str) -> tuple[str, int]:
    name, _, fd = text.rpartition("=")
    if not name or not fd.isdigit():
        raise argparse.ArgumentTypeError(f"expected NAME=FD, got {text!r}")
    return name, int(fd)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="aisoc_inboxd.workers.main", description=__doc__.strip().splitlines()[0])
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--config", type=Path)
    parser.add_argument("--socket", type=_socket, action="append", default=[], dest="sockets")
    parser.add_argument("--log-format", choices=logs.FORMATS, default="json")
    parser.add_argument("--log-level", choices=logs.LEVELS, default="info")
    args = parser.parse_args(argv)
    output = logs.begin(sys.stdout, args.log_format, args.log_level, system=f"worker-{args.index}")

    from twisted.internet import reactor

    output.flush_per_turn(reactor)  # type: ignore[arg-type]

    from aisoc_inboxd.config import load_settings
    from aisoc_inboxd.deliveries import DeliveryLog
    from aisoc_inboxd.gc_pauses import freeze_startup_heap
    from aisoc_inboxd.memory import bound_malloc_heap
    from aisoc_inboxd.tap import prepare
    from aisoc_inboxd.wiring import build_daemon
    from aisoc_inboxd.workers.control import WORKER_FD, WorkerSide, adopt
    from aisoc_inboxd.workers.role import WorkerRole

    settings = load_settings(args.config)
    bound_malloc_heap()
    catalog = prepare(settings)

    def daemon_gone() -> None:
        if reactor.running:  # type: ignore[attr-defined]
            _log.info("the daemon closed the control channel; stopping")
            reactor.stop()  # type: ignore[attr-defined]

    control = WorkerSide(daemon_gone, reactor)  # type: ignore[arg-type]
    control.deliveries = DeliveryLog(settings.deliveries, args.index, settings.workers)
    adopt(reactor, WORKER_FD, control)  # type: ignore[arg-type]
    os.close(WORKER_FD)
    daemon = build_daemon(settings, catalog, reactor, config=args.config,
                          role=WorkerRole(args.index, dict(args.sockets), control.lease, control,
                                          control.deliveries))
    control.reloader = daemon.reloader

    def refused(failure: Failure) -> None:
        _log.error("not serving: {reason}", reason=str(failure.value))
        daemon.start_failed = True
        reactor.stop()  # type: ignore[attr-defined]

    def join() -> None:
        control.join(daemon.reloader.fingerprint()).addCallbacks(lambda _: daemon.startService(), refused)

    # a start that fails is one line already (the daemon logs it and stops the reactor): consumed
    # here, else it comes again as "Unhandled error in Deferred" with a traceback
    daemon.started.addCallbacks(lambda _: (freeze_startup_heap(), control.ready()), lambda failure: None)
    reactor.callWhenRunning(_ignore_interrupts)  # type: ignore[attr-defined]
    reactor.callWhenRunning(join)  # type: ignore[attr-defined]
    reactor.addSystemEventTrigger("before", "shutdown", daemon.stopService)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    sys.exit(1 if daemon.start_failed else 0)


def _ignore_interrupts(*_: Any) -> None:
    """
    Ctrl-C (and a SIGHUP sent to the process group) reaches every process; the daemon stops its
    workers itself, in order, and runs their reloads.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


if __name__ == "__main__":
    main()
