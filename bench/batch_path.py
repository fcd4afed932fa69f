"""
What the HTTP batch path costs per event in process, after the request machinery and before the
broker: the bench's 100-event NDJSON and HEC bodies decoded as their routes decode them, then
published through the daemon's L{Pipeline} (normalize, serialize, one sink write, one metrics
update) into a sink that hands each record to librdkafka's C{produce()} with the Kafka sink's key
and headers through the measured tree's own produce loop (a producer with no broker and no poll
thread: C{produce()} only queues). Prints µs per event, best of runs, stage by stage; C{--once}
runs each path once over C{--batches} bodies for C{valgrind --tool=callgrind}, whose instruction
counts hold under a neighbour's load.

Run it against two trees (C{PYTHONPATH} naming the one measured), alternating. C{--callgrind}
runs C{--once} under callgrind itself, both paths at once, counting only inside C{builtins.any}
(which drives the measured loop, after a warm-up body) on the main thread, and prints instructions
per event. So the same code counts the same from run to run: librdkafka's own threads (whose work
follows the wall clock) are not counted, the hash seed is fixed (C{--once} refuses to run without
one) and the heap is frozen after the warm-up (set iteration order and full collections otherwise
move the counts by ~2.5 k per event).

Run: C{.venv/bin/python bench/batch_path.py [--batches N] [--runs R] [--once ndjson|hec] [--callgrind]}
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import random
import subprocess
import sys
import tempfile
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
from aisoc_inboxd.sinks.kafka import _DeliveryProducer

from inputs import BATCH, _alert  # noqa: E402  (bench/ is this script's directory)
from procs import callgrind_instructions  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]
RECEIVED_AT = 1778230800.0


class ProducingSink:
    """
    The Kafka sink's per-event work on the reactor (its L{_DeliveryProducer.send}: key and headers
    once per batch, C{produce()} per event), durable at once: what is measured is the daemon's
    side, not the broker's. The producer is given its librdkafka handle without C{start()}, so no
    poll thread runs (its polls would add counts that follow the wall clock).
    """

    name = "producing"

    def __init__(self) -> None:
        config = {"bootstrap.servers": "127.0.0.1:9", "queue.buffering.max.messages": "2000000",
                  "queue.buffering.max.kbytes": "2000000", "linger.ms": "100000", "log_level": "0"}
        self._producer = _DeliveryProducer(config, "events", None, None, lambda: None)  # type: ignore[arg-type]
        self._librdkafka = self._producer._producer = Producer(config)

    def write(self, records: Sequence[SinkRecord]) -> Deferred[None]:
        self._producer.send(records)  # fires only on delivery reports: none come
        if len(self._librdkafka) > 100_000:
            self._librdkafka.purge()
            self._librdkafka.poll(0)  # the purged messages' reports release their sends
            self._producer._reported.clear()
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


def _instructions(batches: int) -> dict[str, int]:
    """
    By path, the instructions of C{batches} bodies' whole step, the paths counted at once.
    """
    with tempfile.TemporaryDirectory() as work:
        runs = {path: subprocess.Popen(["valgrind", "--tool=callgrind", "--collect-atstart=no",
                                        "--toggle-collect=builtin_any", f"--callgrind-out-file={work}/{path}.out",
                                        sys.executable, __file__, "--once", path, "--batches", str(batches)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                       env={**os.environ, "PYTHONHASHSEED": "0"})
                for path in ("ndjson", "hec")}
        for path, run in runs.items():
            if run.wait():
                raise SystemExit(f"callgrind run of {path} failed")
        return {path: callgrind_instructions(Path(work) / f"{path}.out") for path in runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--batches", type=int, default=200, help="bodies per run (--callgrind: 20 if not given)")
    parser.add_argument("--runs", type=int, default=7, help="runs per stage; the best is reported")
    parser.add_argument("--once", choices=["ndjson", "hec"], help="run this path's whole step once per body, "
                                                                 "untimed (for callgrind)")
    parser.add_argument("--callgrind", action="store_true", help="instructions per event of each path, "
                                                                 "counted by callgrind")
    args = parser.parse_args()
    if args.callgrind:
        args.batches = 20 if args.batches == parser.get_default("batches") else args.batches
        print(f"| path | instructions, {args.batches} bodies | per event |\n|---|---:|---:|")
        for path, counted in _instructions(args.batches).items():
            print(f"| {path} | {counted:,} | {counted / (args.batches * BATCH):,.0f} |")
        print(f"\n{Path(aisoc_inboxd.__file__).parents[1]}")
        return
    if args.once and os.environ.get("PYTHONHASHSEED") != "0":
        parser.error("--once counts only with PYTHONHASHSEED=0 (valgrind follows no re-exec)")
    steps = paths()
    if args.once:
        decode, whole = steps[args.once]
        whole()  # warm: first calls compile regular expressions, fill caches
        gc.collect()
        gc.freeze()  # no full collection walks the start-up heap inside the count
        any(whole() is None for _ in range(args.batches))  # callgrind counts inside any() only
        return
    print("| path | decode µs/event | decode + publish µs/event |\n|---|---:|---:|")
    for name, (decode, whole) in steps.items():
        print(f"| {name} | {best_us(decode, args.batches, args.runs):.2f} | {best_us(whole, args.batches, args.runs):.2f} |")
    print(f"\n{Path(aisoc_inboxd.__file__).parents[1]}; load average "
          f"{' '.join(Path('/proc/loadavg').read_text().split()[:3])}")


if __name__ == "__main__":
    main()
