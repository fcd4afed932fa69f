"""
What keeping a request as a recent delivery costs, in process: C{DeliveryRecorder.record} alone
(the arguments of a real single-event webhook request, recorded again and again into one ring), and
the whole route (the C{MemoryInbox} of C{aisoc_inboxd.testing}: the real resource tree and site over
a fake sink and store) with deliveries kept and with C{deliveries.per_token: 0}. Prints µs per
request of this process's CPU time; run it against two trees (C{PYTHONPATH} pointing at the one
measured), alternating, and print the load beside it.

Run: C{.venv/bin/python bench/deliveries.py [--records N] [--requests N] [--rounds R]}
"""
from __future__ import annotations

import argparse
import os
import time
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.testing import StringTransport

from aisoc_inboxd.config import DeliverySettings
from aisoc_inboxd.testing import FakeStore, MemoryInbox
from aisoc_inboxd.web.recorder import DeliveryRecorder

BODY = b'{"id": "a1", "title": "disk full", "severity": "high", "host": "web-1"}'
HEADERS = ["Host: inbox", "User-Agent: vendor-hooks/2.1", "Content-Type: application/json",
           "X-Vendor-Event: alert", "X-Vendor-Signature: sha256=0123456789abcdef", "Accept: */*"]


def request_bytes(token: str) -> bytes:
    head = [f"POST /v1/inbox/{token} HTTP/1.1", *HEADERS, f"Content-Length: {len(BODY)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + BODY


async def inbox_of(per_token: int) -> tuple[MemoryInbox, bytes]:
    inbox = MemoryInbox(FakeStore(), deliveries_settings=DeliverySettings(per_token=per_token))
    return inbox, request_bytes(await inbox.mint())


def serve(inbox: MemoryInbox, request: bytes, count: int) -> float:
    """
    C{count} requests on one kept-alive connection to the listener's own site; CPU seconds.
    """
    site = inbox.http._agent._serverFactory
    channel = site.buildProtocol(IPv4Address("TCP", "192.0.2.7", 40000))
    transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.7", 40000),
                                hostAddress=IPv4Address("TCP", "127.0.0.1", 8080))
    channel.makeConnection(transport)
    started = time.process_time()
    for _ in range(count):
        channel.dataReceived(request)
        transport.clear()
    return time.process_time() - started


def recorded_call(inbox: MemoryInbox, request: bytes) -> tuple[DeliveryRecorder, tuple[Any, ...]]:
    """
    The recorder and the arguments of the call it got for one real request.
    """
    calls: list[tuple[DeliveryRecorder, tuple[Any, ...]]] = []
    original = DeliveryRecorder.record

    def capture(self: DeliveryRecorder, *args: Any, client_gone: bool) -> None:
        calls.append((self, (*args, client_gone)))
        original(self, *args, client_gone=client_gone)
    DeliveryRecorder.record = capture  # type: ignore[method-assign]
    try:
        serve(inbox, request, 1)
    finally:
        DeliveryRecorder.record = original  # type: ignore[method-assign]
    return calls[0]


def time_record(recorder: DeliveryRecorder, args: tuple[Any, ...], count: int) -> float:
    record = recorder.record
    started = time.process_time()
    for _ in range(count):
        record(*args)
    return time.process_time() - started


async def measure(records: int, requests: int, rounds: int) -> None:
    kept, request = await inbox_of(DeliverySettings.per_token)
    recorder, args = recorded_call(kept, request)
    off, off_request = await inbox_of(0)
    print(f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'round':>5}  {'record() µs':>12}  {'route, kept µs':>15}  {'route, per_token 0 µs':>22}")
    for n in range(rounds):
        record_us = time_record(recorder, args, records) / records * 1e6
        kept_us = serve(kept, request, requests) / requests * 1e6
        off_us = serve(off, off_request, requests) / requests * 1e6
        print(f"{n + 1:>5}  {record_us:>12.2f}  {kept_us:>15.1f}  {off_us:>22.1f}")
    print(f"load average {os.getloadavg()[0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--requests", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    done = Deferred.fromCoroutine(measure(options.records, options.requests, options.rounds))
    done.addErrback(lambda failure: failure.printTraceback())


if __name__ == "__main__":
    main()
