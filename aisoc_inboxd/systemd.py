"""
The systemd notify protocol (C{Type=notify}): a datagram to C{$NOTIFY_SOCKET} saying C{READY=1}
once every listener is bound and the store is reachable, C{STOPPING=1} when shutdown begins,
C{RELOADING=1} around a reload, and C{WATCHDOG=1} pings at half of C{WatchdogSec=}.

A few lines over a Unix socket: no dependency needed. Without C{$NOTIFY_SOCKET} (twistd, a
terminal) every call does nothing.
"""
from __future__ import annotations

import os
import socket
from typing import Mapping

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from aisoc_inboxd.periodic import Periodic

_log = Logger()


def notify(state: str, environ: Mapping[str, str] | None = None) -> bool:
    """
    Send C{state} (e.g. C{"READY=1\\nSTATUS=serving"}) to the service manager; C{False} when not
    running under one, or when it cannot be reached.
    """
    address = (environ if environ is not None else os.environ).get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            # never block the reactor: a manager that does not read its socket loses a ping, not us
            sock.setblocking(False)
            sock.sendto(state.encode("utf-8"), address)
    except OSError as e:
        _log.warn("cannot notify the service manager: {error}", error=e.strerror)
        return False
    return True


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """
    Seconds between watchdog pings (half of C{WatchdogSec=}), or C{None} when no watchdog is set
    for this process.
    """
    environ = environ if environ is not None else os.environ
    usec = environ.get("WATCHDOG_USEC")
    pid = environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2_000_000


def watchdog(clock: IReactorTime, interval: float) -> Periodic:
    """
    Pings the service manager's watchdog from the reactor: a stuck reactor stops the pings, and
    systemd restarts the daemon.
    """
    return Periodic("systemd-watchdog", lambda: notify("WATCHDOG=1"), clock, interval)
