"""
What the HTTP batch path costs per event in process, after the request machinery and before the
broker: the bench's 100-event NDJSON and HEC bodies decoded as their routes decode them, then
published through the daemon's L{Pipeline} (normalize, serialize, one sink write, one metrics
update) into a sink that hands each record to librdkafka's C{produce()} with the Kafka sink's key
and headers (a producer with no broker: C{produce()} only queues). Prints µs per event, best of
runs, stage by stage; C{--once} runs each path once over C{--batches} bodies for
C{valgrind --tool=callgrind}, whose instruction counts hold under a neighbour's load.

Run it against two trees (C{PYTHONPATH} naming the one measured), alternating.

Run: C{.venv/bin/python bench/batch_path.py [--batches N] [--runs R] [--once ndjson|hec]}
"""
from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from confluent_kafka import Producer
from twisted.internet.defer import Deferred, succeed

import aisoc_inboxd
from aisoc_inboxd.formats.hec import parse_event_body
from aisoc_inboxd.formats.json_body import decode_json_records
from aisoc_inboxd.metrics import Metrics
from aisoc_inboxd.normalizer import load_templates
from aisoc_inboxd.pipeline import Pipeline
from aisoc_inboxd.sinks import SinkRecord
from aisoc_inboxd.sinks.kafka import message_headers

from inputs import BATCH, _alert  # noqa: E402  (bench/ is this script's directory)

PROJECT = Path(__file__).resolve().parents[1]
RECEIVED_AT = 1778230800.0


class ProducingSink:
    """
    The Kafka sink's per-event work on the reactor (key, headers once per batch, C{produce()}),
    durable at once: what is measured is the daemon's side, not the broker's.
    """

    name = "producing"

    def __init__(self) -> None:
        self._producer = Producer({"bootstrap.servers": "127.0.0.1:9", "queue.buffering.max.messages": 2_000_000,
                                   "queue.buffering.max.kbytes": 2_000_000, "linger.ms": 100_000,
                                   "log_level": 0})

    def write(self, records: Sequence[SinkRecord]) -> Deferred[None]:
        produce, key, headers = self._producer.produce, records[0].tenant_id.encode(), message_headers(records[0])
        for record in records:
            produce("events", record.value, key, headers=headers, on_delivery=len)
        if len(self._producer) > 100_000:
            self._producer.purge()
        return succeed(None)

    def not_ready(self) -> str | None:
        return None


def bodies() -> tuple[bytes, bytes]:
    """
    The bench's NDJSON and HEC bodies (as C{bench/inputs.py} writes them for C{bench/run.py}).
    """
    rng = random.Random(8)
    _alert(rng, 0)  # the single-event body comes first there
    ndjson = "".join(json.dumps(_alert(rng, n), separators=(",", ":")) + "\n" for n in range(BATCH))
    hec = "".join(json.dumps({"time": 1778230800 + n, "host": "fw-edge-01", "source": "bench",
                              "sourcetype": "acme:alert", "event": _alert(rng, n)}, separators=(",", ":"))
                  for n in range(BATCH))
    return ndjson.encode(), hec.encode()


def paths() -> dict[str, tuple[Callable[[], Any], Callable[[], Any]]]:
    """
    By path, the decode step alone and the whole step (decode and publish) over one body.
    """
    templates = load_templates([PROJECT / "templates"])
    pipeline = Pipeline(ProducingSink(), Metrics())
    ndjson, hec = bodies()
    generic, splunk = templates["generic-json"], templates["splunk-hec"]

    def ndjson_decode() -> Any:
        return decode_json_records(ndjson, 10_000)

    def hec_decode() -> Any:
        return list(parse_event_body(hec, 10_000).records)

    return {
        "ndjson": (ndjson_decode, lambda: pipeline.publish(generic, "tenant-a", "webhook", ndjson_decode(),
                                                            RECEIVED_AT, {"content-type": "application/x-ndjson"})),
        "hec": (hec_decode, lambda: pipeline.publish(splunk, "tenant-a", "hec", hec_decode(), RECEIVED_AT,
                                                      {"content-type": "application/json"})),
    }


def best_us(step: Callable[[], Any], batches: int, runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(batches):
            step()
        best = min(best, time.perf_counter() - start)
    return best / (batches * BATCH) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--batches", type=int, default=200, help="bodies per run")
    parser.add_argument("--runs", type=int, default=7, help="runs per stage; the best is reported")
    parser.add_argument("--once", choices=["ndjson", "hec"], help="run this path's whole step once per body, "
                                                                 "untimed (for callgrind)")
    args = parser.parse_args()
    steps = paths()
    if args.once:
        decode, whole = steps[args.once]
        whole()  # warm: first calls compile regular expressions, fill caches
        for _ in range(args.batches):
            whole()
        return
    print("| path | decode µs/event | decode + publish µs/event |\n|---|---:|---:|")
    for name, (decode, whole) in steps.items():
        print(f"| {name} | {best_us(decode, args.batches, args.runs):.2f} | {best_us(whole, args.batches, args.runs):.2f} |")
    print(f"\n{Path(aisoc_inboxd.__file__).parents[1]}; load average "
          f"{' '.join(Path('/proc/loadavg').read_text().split()[:3])}")


if __name__ == "__main__":
    main()
