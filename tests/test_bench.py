"""
The bench's own measuring parts: bench/targets.py's /metrics scrape (a daemon slow to answer under
load costs the run a retry, not the run: a real HTTP server on loopback that stalls its first
answers), bench/run.py's count of the datagrams the kernel dropped (a real UDP socket), and which
syslog-ng row each of the daemon's rows is compared with.
"""
from __future__ import annotations

import contextlib
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from run import Row, ratio_notes, udp_drops  # noqa: E402
from targets import scrape  # noqa: E402

STALL = 1.0


class StallingMetrics(BaseHTTPRequestHandler):
    """Answers GET with a metrics line, after stalling the first C{server.stalls} requests."""

    def do_GET(self) -> None:
        server = self.server
        with server.lock:  # type: ignore[attr-defined]
            server.asked += 1  # type: ignore[attr-defined]
            stall = server.asked <= server.stalls  # type: ignore[attr-defined]
        if stall:
            server.released.wait(STALL)  # type: ignore[attr-defined]
        body = b"aisoc_ingest_kafka_events_produced_total 42.0\n"
        try:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the client gave up on this one

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def metrics() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), StallingMetrics)
    server.lock, server.asked, server.stalls = threading.Lock(), 0, 0  # type: ignore[attr-defined]
    server.released = threading.Event()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.released.set()  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()


def url(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/metrics"


def test_a_slow_answer_is_asked_again(metrics: ThreadingHTTPServer) -> None:
    """Two answers slower than the timeout, the third in time: the scrape returns the third's body."""
    metrics.stalls = 2  # type: ignore[attr-defined]
    assert scrape(url(metrics), timeout=0.2, attempts=3) == b"aisoc_ingest_kafka_events_produced_total 42.0\n"
    assert metrics.asked == 3  # type: ignore[attr-defined]


def test_the_retries_are_bounded(metrics: ThreadingHTTPServer) -> None:
    """No answer in time on any attempt: the last attempt's timeout is raised, after that many attempts."""
    metrics.stalls = 10  # type: ignore[attr-defined]
    with pytest.raises(OSError):
        scrape(url(metrics), timeout=0.2, attempts=2)
    assert metrics.asked == 2  # type: ignore[attr-defined]


def test_the_kernel_drops_of_a_full_receive_buffer_are_counted() -> None:
    """1,000 datagrams sent to a socket with a tiny receive buffer that reads none until the end: what
    it reads and what the count says the kernel dropped add up to what was sent."""
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with receiver, sender:
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        receiver.bind(("127.0.0.1", 0))
        port = receiver.getsockname()[1]
        before = udp_drops(port)
        for _ in range(1000):
            sender.sendto(b"x" * 300, ("127.0.0.1", port))
        receiver.setblocking(False)
        read = 0
        with contextlib.suppress(BlockingIOError):
            while True:
                receiver.recv(65535)
                read += 1
        dropped = udp_drops(port) - before
    assert dropped > 0 and read + dropped == 1000


def test_each_row_is_compared_with_the_nearest_syslog_ng_row() -> None:
    """With --interleave syslog-ng runs the same row after each daemon: each daemon row's ratio is to
    the syslog-ng row beside it (the same neighbours' load), not to the last one of the run."""
    rows = [Row("syslog TCP octet-counted, 4 conn", "file, 2 workers", events=8_000, seconds=1.0),
            Row("syslog TCP octet-counted, 4 conn", "syslog-ng (JSON file)", events=16_000, seconds=1.0),
            Row("syslog TCP octet-counted, 4 conn", "kafka, 2 workers", events=7_000, seconds=1.0),
            Row("syslog TCP octet-counted, 4 conn", "syslog-ng (JSON file)", events=10_000, seconds=1.0)]
    ratio_notes(rows)
    assert [row.note for row in rows] == ["0.50x syslog-ng", "", "0.70x syslog-ng", ""]
