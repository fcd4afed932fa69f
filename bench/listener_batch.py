"""
What the syslog TCP listener's path costs per event in process, counted by callgrind: the bench's
octet-counted RFC 5424 CEF frames (C{bench/inputs.py}) fed to a L{SyslogStreamProtocol} in
segments of C{B} frames each, through its L{SyslogIntake} (framing, decoding, accounting), the
daemon's L{Intake} and L{Pipeline} (the fused events, orjson, one sink write, one metrics update)
into a sink that is durable at once, so the whole batch runs to its end inside the segment's
C{dataReceived}. Run at several segment sizes, the instructions per event part into what each
event costs and what each batch costs (the slope between the smallest and the largest size): the
figures for a change to the listener's per-batch path (its Deferreds, coroutines and counters).

Counts only inside C{builtins.any} (which drives the measured loop, after a warm-up pass), with
a fixed hash seed and the heap frozen after the warm-up, as C{bench/cef_frame_cost.py}. Run it
against two trees (C{PYTHONPATH} naming the one measured), alternating.

Run: C{.venv/bin/python bench/listener_batch.py [--events N] [--sizes 1,10,100]}
"""
from __future__ import annotations

import argparse
import gc
import random
import sys
from pathlib import Path
from typing import Any, Sequence

from twisted.internet.defer import succeed

from procs import instructions_inside_any

BENCH = Path(__file__).resolve().parent
PROJECT = BENCH.parent
NOW = 1778230800.0


class DurableSink:
    """
    A sink whose writes are durable at once: the listener's side is what is measured.
    """

    saturated = False
    running = True

    def write(self, records: Sequence[Any]) -> Any:
        return succeed(None)

    def not_ready(self) -> None:
        return None


def _segments(size: int, events: int) -> tuple[Any, list[bytes]]:
    """
    A connected protocol of a listener wired as the daemon wires it, and C{events} frames in
    segments of C{size}.
    """
    sys.path.append(str(PROJECT))  # after PYTHONPATH: the measured tree's aisoc_inboxd comes first
    from prometheus_client import CollectorRegistry
    from twisted.internet.task import Clock
    from twisted.internet.testing import StringTransport

    from aisoc_inboxd.catalog import TemplateCatalog
    from aisoc_inboxd.config import SyslogListenerSettings
    from aisoc_inboxd.inflight import InFlight
    from aisoc_inboxd.intake.intake import Intake
    from aisoc_inboxd.metrics import Metrics, SyslogMetrics
    from aisoc_inboxd.pipeline import Pipeline
    from aisoc_inboxd.syslog.protocol import IdleCloses, SyslogIntake, SyslogStreamProtocol
    from bench.inputs import _cef, _syslog

    clock = Clock()
    clock.advance(NOW)
    sink = DurableSink()
    intake = Intake(None, TemplateCatalog.load([], None), Pipeline(sink, Metrics()), None, None,  # type: ignore[arg-type]
                    clock)
    settings = SyslogListenerSettings(name="bench", endpoint="tcp:0", tenant="acme")
    listener = SyslogIntake(settings, intake, SyslogMetrics(CollectorRegistry()), InFlight(clock), 100_000, sink)
    protocol = SyslogStreamProtocol(listener, IdleCloses(listener, clock))
    protocol.callLater = clock.callLater  # type: ignore[method-assign]
    protocol.makeConnection(StringTransport())
    rng = random.Random(8)
    messages = [_syslog(_cef(rng, n), n).encode() for n in range(100)]
    frames = [b"%d %s" % (len(m), m) for m in messages]
    frames = (frames * (events // len(frames) + 1))[:events]
    return protocol, [b"".join(frames[start:start + size]) for start in range(0, events, size)]


def _run(size: int, events: int) -> None:
    """The measured loop: each segment into C{dataReceived} inside C{any}."""
    protocol, segments = _segments(size, events)
    for segment in segments[:max(1, 100 // size)]:  # warm: regexes compiled, caches filled
        protocol.dataReceived(segment)
    gc.collect()
    gc.freeze()  # no full collection walks the start-up heap inside the count
    any(protocol.dataReceived(segment) for segment in segments)


def _instructions(size: int, events: int) -> int:
    return instructions_inside_any(__file__, "--size", str(size), "--events", str(events))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--events", type=int, default=1000, help="frames counted per segment size")
    parser.add_argument("--sizes", default="1,10,100", help="frames per segment, comma-separated")
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)  # the run under callgrind
    args = parser.parse_args()
    if args.size:
        _run(args.size, args.events)
        return
    sizes = sorted(int(size) for size in args.sizes.split(","))
    per_event = {size: _instructions(size, args.events) / args.events for size in sizes}
    print("| frames per segment | instructions per event |\n|---|---:|")
    for size in sizes:
        print(f"| {size} | {per_event[size]:,.0f} |")
    if len(sizes) > 1:
        small, large = sizes[0], sizes[-1]
        per_batch = (per_event[small] - per_event[large]) / (1 / small - 1 / large)
        print(f"\nper batch (slope): {per_batch:,.0f}; per event: {per_event[large] - per_batch / large:,.0f}")
    import aisoc_inboxd
    print(f"\n{Path(aisoc_inboxd.__file__).parents[1]}")


if __name__ == "__main__":
    main()
