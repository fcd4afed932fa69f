"""
The UDP listeners' receive buffer (C{SO_RCVBUF}): the configured size, checked at load; applied to a
port the listener binds and to one it adopts (a worker's), read back from the real socket; logged
once at start, with a warning naming the sysctl when the kernel caps it at C{net.core.rmem_max};
a burst into a listener whose reactor is busy, showing what the larger buffer keeps (printed: how
many the kernel drops depends on the machine, so only the buffer size is asserted); and the syslog
protocol submitting what one read of the socket delivers as one batch.
"""
from __future__ import annotations

import fcntl
import socket
import sys
import termios
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import capturedLogs, formatEvent

from aisoc_inboxd.config import MAX_RECEIVE_BUFFER, ConfigError, load_settings
from aisoc_inboxd.listeners import DatagramListener
from aisoc_inboxd.syslog.protocol import SyslogDatagramProtocol
from tests.support.daemon import wait_for
from tests.test_syslog_listeners import make_listener

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the expected sizes follow Linux's rmem_max cap and doubling")

MiB = 1024 * 1024


def rmem_max() -> int:
    return int(Path("/proc/sys/net/core/rmem_max").read_text())


def linux_grants(requested: int) -> int:
    """
    What getsockopt reads back on Linux after asking for C{requested}: capped at rmem_max, doubled.
    """
    return 2 * min(requested, rmem_max())


# --- configuration ---------------------------------------------------------------------------------

def test_udp_listeners_ask_for_8_mib_unless_configured(tmp_path: Path) -> None:
    """syslog.udp_receive_buffer_bytes (default 8 MiB) applies to every UDP listener that sets no
    receive_buffer_bytes of its own; 0 leaves the kernel's default."""
    default = load_settings(None, {}).syslog
    assert [default.receive_buffer_of(entry) for entry in default.listeners if entry.udp_port] == [8 * MiB]
    config = tmp_path / "c.yaml"
    config.write_text("syslog:\n  udp_receive_buffer_bytes: 1048576\n  listeners:\n"
                      "    - {name: a, udp_port: 1, tenant: t}\n"
                      "    - {name: b, udp_port: 2, tenant: t, receive_buffer_bytes: 0}\n"
                      "    - {name: c, udp_port: 3, tenant: t, receive_buffer_bytes: 33554432}\n")
    syslog = load_settings(config, {}).syslog
    assert [syslog.receive_buffer_of(entry) for entry in syslog.listeners] == [MiB, 0, 32 * MiB]


@pytest.mark.parametrize(("yaml", "message"), [
    ("syslog:\n  udp_receive_buffer_bytes: -1\n",
     rf"syslog\.udp_receive_buffer_bytes: must be 0 \(the kernel's default\) or a number of bytes up to "
     rf"{MAX_RECEIVE_BUFFER}, got -1"),
    (f"syslog:\n  udp_receive_buffer_bytes: {MAX_RECEIVE_BUFFER + 1}\n",
     rf"syslog\.udp_receive_buffer_bytes: .* got {MAX_RECEIVE_BUFFER + 1}"),
    ("syslog:\n  udp_receive_buffer_bytes: 8MiB\n", r"syslog\.udp_receive_buffer_bytes: expected"),
    ("syslog:\n  listeners:\n    - {name: a, udp_port: 1, tenant: t, receive_buffer_bytes: -5}\n",
     r"syslog\.listeners\[0\]\.receive_buffer_bytes: must be 0 .* got -5"),
    ("syslog:\n  listeners:\n    - {name: a, endpoint: 'tcp:1', tenant: t, receive_buffer_bytes: 1024}\n",
     r"syslog\.listeners\[0\]\.receive_buffer_bytes: only a udp_port listener has a receive buffer"),
])
def test_receive_buffer_settings_are_checked(tmp_path: Path, yaml: str, message: str) -> None:
    """A negative, oversized or non-numeric size, or one on a TCP listener, stops start-up naming the key."""
    config = tmp_path / "c.yaml"
    config.write_text(yaml)
    with pytest.raises(ConfigError, match=message):
        load_settings(config, {})


# --- real sockets ----------------------------------------------------------------------------------

class Counting(DatagramProtocol):
    def __init__(self) -> None:
        self.received = 0

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.received += 1


def buffer_lines(logged: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(event["log_level"].name, formatEvent(event)) for event in logged
            if "receive buffer" in formatEvent(event)]


def read_back(sock: socket.socket) -> int:
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


@pytest_twisted.ensureDeferred
async def test_a_bound_port_gets_the_buffer_and_says_so(reactor: Any) -> None:
    """The socket the listener binds reads back the size asked for (doubled by Linux) and the start
    logs it once."""
    requested = min(MiB, rmem_max())
    listener = DatagramListener(0, "127.0.0.1", Counting(), reactor, "syslog-udp", receive_buffer_bytes=requested)
    with capturedLogs() as logged:
        port = await listener.listen()
    try:
        assert read_back(port.socket) == linux_grants(requested)
        assert buffer_lines(logged) == [("info", f"syslog-udp: receive buffer set to {requested} bytes")]
    finally:
        await listener.stopService()


@pytest_twisted.ensureDeferred
async def test_a_capped_buffer_is_a_warning_naming_the_sysctl(reactor: Any) -> None:
    """Asking for more than net.core.rmem_max gets rmem_max (Linux caps silently): the start warns with
    the sysctl that raises the cap."""
    requested = rmem_max() + MiB
    listener = DatagramListener(0, "127.0.0.1", Counting(), reactor, "syslog-udp", receive_buffer_bytes=requested)
    with capturedLogs() as logged:
        port = await listener.listen()
    try:
        assert read_back(port.socket) == linux_grants(requested)
        ((level, line),) = buffer_lines(logged)
        assert level == "warn"
        assert f"asked for a receive buffer of {requested} bytes, the kernel set {rmem_max()}" in line
        assert f"sysctl -w net.core.rmem_max={requested}" in line and "/etc/sysctl.d" in line
    finally:
        await listener.stopService()


@pytest_twisted.ensureDeferred
async def test_an_adopted_port_gets_the_buffer_without_a_second_report(reactor: Any) -> None:
    """A worker adopts the daemon's socket: the buffer is the socket's, so the daemon's own descriptor
    reads it back; only the process that bound the socket logs it."""
    requested = min(MiB, rmem_max())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as bound:
        bound.bind(("127.0.0.1", 0))
        bound.setblocking(False)
        listener = DatagramListener(0, "127.0.0.1", Counting(), reactor, "syslog-udp",
                                    inherited_fd=bound.fileno(), receive_buffer_bytes=requested)
        with capturedLogs() as logged:
            await listener.listen()
        try:
            assert read_back(bound) == linux_grants(requested)
            assert buffer_lines(logged) == []
        finally:
            await listener.stopService()


@pytest_twisted.ensureDeferred
async def test_0_leaves_the_kernels_default(reactor: Any) -> None:
    """receive_buffer_bytes 0 asks for nothing: the socket keeps net.core.rmem_default and nothing is logged."""
    listener = DatagramListener(0, "127.0.0.1", Counting(), reactor, "syslog-udp", receive_buffer_bytes=0)
    with capturedLogs() as logged:
        port = await listener.listen()
    try:
        assert read_back(port.socket) == int(Path("/proc/sys/net/core/rmem_default").read_text())
        assert buffer_lines(logged) == []
    finally:
        await listener.stopService()


BURST = 20_000


async def send_while_busy(reactor: Any, protocol: DatagramProtocol, receive_buffer_bytes: int, count: int) -> int:
    """
    Send C{count} datagrams to a listener from the reactor's own thread, so that it reads none of them
    until they are all sent (a reactor busy for a moment); then let it drain its socket. Returns the
    buffer read back.
    """
    listener = DatagramListener(0, "127.0.0.1", protocol, reactor, "burst", receive_buffer_bytes=receive_buffer_bytes)
    port = await listener.listen()
    try:
        datagram = b"<134>1 2026-11-27T10:00:00Z fw app - - - CEF:0|Acme|FW|1|100|burst|5|src=10.0.0.1 n=%05d"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.connect(("127.0.0.1", port.getHost().port))
            for n in range(count):
                sender.send(datagram % n)
        await wait_for(lambda: queued(port.socket) == 0, reactor)
        return read_back(port.socket)
    finally:
        await listener.stopService()


def queued(sock: socket.socket) -> int:
    """
    The size of the next datagram waiting in C{sock} (Linux FIONREAD on UDP), 0 once it is drained.
    """
    return int.from_bytes(fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"), sys.byteorder)


@pytest_twisted.ensureDeferred
async def test_a_burst_into_a_busy_listener_loses_less_with_the_larger_buffer(reactor: Any) -> None:
    """20,000 datagrams sent while the reactor reads none: the kernel's default buffer holds a few
    hundred of them, the configured one (8 MiB, as far as rmem_max allows) many more. The counts are
    printed, not asserted: they depend on the kernel and the machine."""
    default, sized = Counting(), Counting()
    default_size = await send_while_busy(reactor, default, 0, BURST)
    sized_size = await send_while_busy(reactor, sized, 8 * MiB, BURST)
    assert sized_size == linux_grants(8 * MiB)
    for label, size, received in (("kernel default", default_size, default.received),
                                  ("8 MiB asked", sized_size, sized.received)):
        print(f"burst of {BURST}: {label} (SO_RCVBUF reads {size}): received {received}, "
              f"lost {BURST - received} ({100 * (BURST - received) / BURST:.1f} %)")


@pytest_twisted.ensureDeferred
async def test_what_one_read_delivers_is_one_batch(reactor: Any) -> None:
    """The syslog protocol on a real socket: 500 datagrams waiting when the reactor gets to them are
    read in one doRead (Twisted reads up to 256 KiB of them per wakeup) and submitted as one batch."""
    listener, intake, _ = make_listener(max_in_flight=10_000, max_frame_bytes=1024)
    await send_while_busy(reactor, SyslogDatagramProtocol(listener, reactor), MiB, 500)
    await wait_for(lambda: bool(intake.deliveries), reactor)
    assert [len(records) for _, records, _ in intake.deliveries] == [500]
