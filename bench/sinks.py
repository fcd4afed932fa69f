"""
What a sink costs per event, in process: batches of serialized OCSF events made into sink records
and written to the file sink (fsynced) and to the Kafka sink (a tansu broker, C{acks=all}), several
writes in flight at once as concurrent requests would have them. Prints events/s and the CPU-µs per
event of this process, all of its threads (the reactor, the file sink's writer, Kafka's poll thread
and librdkafka's own).

The whole daemon's figures are C{bench/run.py}'s; this one leaves out parsing and normalizing, so a
change to the batch path into a sink shows through the noise of a shared machine: run it against
two trees (C{PYTHONPATH} pointing at the one measured), alternating.

Run: C{.venv/bin/python bench/sinks.py [--events N] [--batch B] [--in-flight W] [--rounds R]}
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from twisted.internet import task
from twisted.internet.defer import Deferred, DeferredSemaphore, gatherResults

import aisoc_inboxd
from aisoc_inboxd.sinks import SinkRecord
from aisoc_inboxd.sinks.file import FileSink
from aisoc_inboxd.sinks.kafka import KafkaSink
from aisoc_inboxd.sinks.spool import Spool

# after the daemon's modules: targets puts this tree first on sys.path, and the tree measured is the
# one PYTHONPATH names, when it names one
from targets import TOPIC, Tansu  # noqa: E402


def event_values(count: int) -> list[bytes]:
    """
    C{count} compact OCSF detection findings of about 900 bytes, each with its own C{metadata.uid}.
    """
    template = {"class_uid": 2004, "category_uid": 2, "activity_id": 1, "severity_id": 3, "time": 1764748800000,
                "finding_info": {"title": "Connection denied", "uid": "deny", "types": ["firewall"]},
                "src_endpoint": {"ip": "10.0.0.1", "port": 51515}, "dst_endpoint": {"ip": "10.1.0.1", "port": 443},
                "metadata": {"version": "1.8.0", "product": {"vendor_name": "Acme", "name": "FW", "version": "2.1"},
                             "tenant_uid": "tenant-a", "log_source": "syslog", "logged_time": 1764748800123},
                "unmapped": {"cs1": "x" * 300}, "raw_data": "CEF:0|Acme|FW|2.1|deny|Connection denied|5|" + "y" * 200}
    values = []
    for _ in range(count):
        template["metadata"]["uid"] = str(uuid.uuid4())  # type: ignore[index]
        values.append(json.dumps(template, separators=(",", ":")).encode())
    return values


async def drive(sink: Any, values: list[bytes], batch: int, in_flight: int) -> tuple[float, float]:
    """
    Write C{values} in batches, at most C{in_flight} writes at once; the wall seconds and the CPU
    seconds of this process it took.
    """
    gate = DeferredSemaphore(in_flight)
    received_at = time.time()

    def write(start: int) -> Deferred[None]:
        # the sink records are made here, as the pipeline makes them: one per event
        return sink.write([SinkRecord("tenant-a", "cef-syslog", "syslog", received_at, value)
                           for value in values[start:start + batch]])

    wall, cpu = time.monotonic(), time.process_time()
    await gatherResults([gate.run(write, start) for start in range(0, len(values), batch)])
    return time.monotonic() - wall, time.process_time() - cpu


async def measure(reactor: Any, args: argparse.Namespace, work: Path) -> list[tuple[str, int, float, float]]:
    values = event_values(args.events)
    rows = []
    tansu = Tansu(work)
    tansu.start()
    try:
        for round_ in range(args.rounds):
            for name in ("file", "kafka"):
                sink: Any
                if name == "file":
                    sink = FileSink(work / f"file-{round_}", reactor, registry=CollectorRegistry())
                else:
                    spool = Spool(work / f"spool-{round_}", 256 * 1024 * 1024, reactor)
                    sink = KafkaSink(TOPIC, {"bootstrap.servers": tansu.bootstrap}, spool, reactor,
                                     registry=CollectorRegistry(), max_in_flight=args.batch * args.in_flight)
                sink.startService()
                await drive(sink, values[:args.batch * args.in_flight], args.batch, args.in_flight)  # warm up
                wall, cpu = await drive(sink, values, args.batch, args.in_flight)
                await sink.stopService()
                rows.append((name, len(values), wall, cpu))
    finally:
        tansu.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="events written per sink and round")
    parser.add_argument("--batch", type=int, default=100, help="events per write (one request or syslog read)")
    parser.add_argument("--in-flight", type=int, default=8, help="writes in flight at once")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per sink (the table shows each)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aisoc-bench-sinks-") as work:
        rows: list[tuple[str, int, float, float]] = []

        async def run(reactor: Any) -> None:
            rows.extend(await measure(reactor, args, Path(work)))

        try:
            task.react(lambda reactor: Deferred.fromCoroutine(run(reactor)))
        except SystemExit as e:
            if e.code:
                raise
    print("| sink | events | batch | events/s | CPU-µs/event |\n|---|---:|---:|---:|---:|")
    for name, events, wall, cpu in rows:
        print(f"| {name} | {events:,} | {args.batch} | {events / wall:,.0f} | {cpu / events * 1e6:.1f} |")
    print(f"\n{Path(aisoc_inboxd.__file__).parents[1]}; load average {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")


if __name__ == "__main__":
    main()
