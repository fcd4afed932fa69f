"""
The single-event webhook's tail latency (issue 14: p99 <= 20 ms at 80 % of the measured maximum).

Starts one daemon (file or Kafka sink), measures its saturated rate once with wrk (32 connections),
then runs the paced row of bench/run.py (50 connections, each waiting between requests so the whole
offers ~80 % of that rate) C{--rounds} times and prints p50/p99/p99.9 per round, with the load
average. C{--daemon-path DIR} puts DIR first on the daemon's C{PYTHONPATH} (another worktree's code,
for before/after runs); C{--probe DIR} also loads bench/stallprobe into the daemon and prints what
stopped its reactor thread (garbage collections timed, stalls with the stacks that held them).

Run: C{.venv/bin/python bench/tail.py [--sink file|kafka] [--seconds S] [--rounds N] [--rate R]
[--daemon-path DIR] [--probe DIR]}
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from inputs import write_inputs
from procs import Processes
from run import TCP_CONNECTIONS, check_tools, paced_delay_ms, start_daemon, wrk
from targets import PROJECT, Daemon, Tansu

PROBE = PROJECT / "bench" / "stallprobe"


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--sink", choices=("file", "kafka"), default="file")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each wrk run")
    parser.add_argument("--rounds", type=int, default=2, help="paced runs after the saturated one")
    parser.add_argument("--rate", type=float, help="offer 80 %% of this req/s instead of measuring it")
    parser.add_argument("--daemon-path", type=Path, help="put this first on the daemon's PYTHONPATH")
    parser.add_argument("--probe", type=Path, help="load bench/stallprobe into the daemon, write its reports here")
    args = parser.parse_args()
    check_tools({"wrk": "wrk"})
    paths = [str(p) for p in (args.probe and PROBE, args.daemon_path) if p]
    if paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([*paths, *filter(None, [os.environ.get("PYTHONPATH")])])
    if args.probe:
        args.probe.mkdir(parents=True, exist_ok=True)
        for old in args.probe.glob("*.json"):
            old.unlink()
        os.environ["AISOC_STALLPROBE_DIR"] = str(args.probe.resolve())
    work = Path(tempfile.mkdtemp(prefix="aisoc-tail-"))
    (work / "logs").mkdir()
    try:
        with Processes(work / "logs") as processes:
            inputs = write_inputs(work, 1_000, TCP_CONNECTIONS)
            tansu = None
            if args.sink == "kafka":
                tansu = Tansu(work)
                tansu.start()
            daemon = Daemon(work / "inboxd", args.sink, tansu.bootstrap if tansu else None, workers=args.workers)
            start_daemon(daemon, processes)
            url = daemon.url(f"/v1/inbox/{daemon.tokens['generic-json']}")
            rate = args.rate
            p50_ms = 2.0
            print("| run | load | req/s | p50 ms | p99 ms | p99.9 ms | non-2xx |\n|---|---|---:|---:|---:|---:|---:|")
            if rate is None:
                result = wrk(url, inputs.single, "application/json", None, 32, args.seconds)
                rate = result["requests"] / (result["duration_us"] / 1e6)
                p50_ms = result["p50_us"] / 1000
                print(row("saturated, 32 conn", result), flush=True)
            delay = paced_delay_ms(0.8 * rate, 50, p50_ms)
            for n in range(args.rounds):
                result = wrk(url, inputs.single, "application/json", None, 50, args.seconds, delay)
                print(row(f"~80 % of {rate:,.0f}/s (50 conn, {delay} ms pause), round {n + 1}", result), flush=True)
            if tansu is not None:
                processes.stop(daemon.pid)
                tansu.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.probe:
        reports = [json.loads(path.read_text()) for path in sorted(args.probe.glob("*.json"))]
        served = [report for report in reports if "run" in report["argv"] or "--index" in report["argv"]]
        print(gc_table(served))
        for report in served:
            print(f"\npid {report['pid']}: " + json.dumps(summary(report), indent=1))


def row(label: str, result: dict[str, float]) -> str:
    rate = result["requests"] / (result["duration_us"] / 1e6)
    return (f"| {label} | {load()} | {rate:,.0f} | {result['p50_us'] / 1000:.1f} | {result['p99_us'] / 1000:.1f} "
            f"| {result['p999_us'] / 1000:.1f} | {result['non_2xx']:.0f} |")


def gc_table(reports: list[dict[str, Any]]) -> str:
    """
    Per serving process (the token-minting commands are left out) and generation: collections, their
    CPU time in total and at most (the thread's, which other processes' load does not stretch), the
    longest wall pause; then the reactor's stalls (heartbeat over the probe's threshold).
    """
    lines = ["\n| pid | gen | collections | CPU ms total | CPU ms max | wall ms max |", "|---|---:|---:|---:|---:|---:|"]
    for report in reports:
        for gen, stats in sorted(report["gc"].items()):
            lines.append(f"| {report['pid']} | {gen} | {stats['count']} | {stats['cpu_total_ms']:.0f} "
                         f"| {stats['cpu_max_ms']:.1f} | {stats['max_ms']:.1f} |")
    for report in reports:
        lines.append(f"\npid {report['pid']}: {report['gc_freeze_count']} objects frozen; {report['stalls']} reactor "
                     f"stalls, {report['stalls_with_gc2']} with a gen-2 collection; gen-2 CPU ms each: "
                     + " ".join(f"{entry[2]:.1f}" for entry in report["gc2_log"]))
    return "\n".join(lines)


def summary(report: dict[str, object]) -> dict[str, object]:
    return {key: report[key] for key in ("gc_threshold", "stall_ms", "stall_stacks")}


if __name__ == "__main__":
    sys.exit(main())
