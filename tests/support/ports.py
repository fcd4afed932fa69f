"""
Free local ports for the daemons, brokers and servers the tests start.

A port the kernel hands out for C{bind(0)} lies in its ephemeral range, the range it also draws the
local port of every outgoing connection from: between a test picking such a port and its daemon
binding it, a connection (to PostgreSQL, to the broker, the daemon's own) can take it, and the
daemon fails with "Address already in use" (seen once in CI). So ports are picked outside that range
and checked free by binding them, and none is handed out twice in one test process.
"""
from __future__ import annotations

import random
import socket
from pathlib import Path

__all__ = ["free_port"]

#: the lowest port picked: above the well-known and most registered service ports
_LOWEST = 20_000
_handed_out: set[int] = set()


def _ephemeral_range() -> range:
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32_768, 60_999  # Linux's default
    return range(low, high + 1)


def _candidates() -> list[int]:
    ephemeral = _ephemeral_range()
    return [port for port in range(_LOWEST, 65_536) if port not in ephemeral and port not in _handed_out]


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """
    A port on 127.0.0.1 that nothing is bound to now (for C{kind}: TCP or UDP), outside the kernel's
    ephemeral range; the kernel's own pick when that range leaves nothing outside it.
    """
    candidates = _candidates()
    random.shuffle(candidates)
    for port in candidates[:200]:
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
