"""
Instructions per single-event webhook request, counted by callgrind: a figure the other processes
on the machine do not move, for before/after comparisons of the per-request path (issue 14.4).

Starts the daemon (file sink, one process) under C{valgrind --tool=callgrind} with instrumentation
off, turns it on once the daemon is ready, drives it with wrk for a warm-up, counts C{--seconds}
idle (timers), then C{--seconds} under wrk, and prints the instructions (Ir) of the whole process
(every thread: the reactor and the sink's fsync thread) per request served, with and without the
idle count (under valgrind the daemon is ~50x slower, so its timers weigh more than natively).
Point C{PYTHONPATH} at the tree to measure.

Run: C{.venv/bin/python bench/request_cost.py [--seconds S] [--connections C] [--keep FILE]}
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from procs import Processes, callgrind_instructions, wait_until
from run import check_tools, wrk
from targets import INBOXD, PROJECT, Daemon
from inputs import write_inputs

def control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True, timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the counted load")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections")
    parser.add_argument("--keep", type=Path, help="copy the loaded run's callgrind dump here (for callgrind_annotate)")
    args = parser.parse_args()
    check_tools({"wrk": "wrk", "valgrind": "valgrind", "callgrind_control": "valgrind"})
    work = Path(tempfile.mkdtemp(prefix="aisoc-request-cost-"))
    (work / "logs").mkdir()
    inputs = write_inputs(work, 10, (1,))
    daemon = Daemon(work / "inboxd", "file", None)
    daemon.write_config()
    token = daemon.mint("generic-json")
    out = work / "callgrind.out"
    with Processes(work / "logs") as processes:
        daemon.process = processes.start(daemon.name, [
            "valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
            sys.executable, str(INBOXD), "--config", str(daemon.config), "run"], cwd=PROJECT)
        if not wait_until(daemon._healthy, timeout=600, interval=1.0):
            sys.exit("the daemon did not start under valgrind")
        pid = str(daemon.pid)
        control("--instr=on", pid)
        url = daemon.url(f"/v1/inbox/{token}")
        wrk(url, inputs.single, "application/json", None, args.connections, 5)
        control("--zero", pid)
        time.sleep(args.seconds)
        control("--dump", pid)
        control("--zero", pid)
        result = wrk(url, inputs.single, "application/json", None, args.connections, args.seconds)
        control("--dump", pid)
        processes.stop(daemon.pid, timeout=120)
    idle, loaded = (callgrind_instructions(work / f"callgrind.out.{n}") for n in (1, 2))
    if args.keep is not None:
        shutil.copyfile(work / "callgrind.out.2", args.keep)
    shutil.rmtree(work)
    requests = result["requests"]
    print(f"requests {requests:.0f} (non-2xx {result['non_2xx']:.0f}); instructions idle {idle:,}, loaded "
          f"{loaded:,}; per request {loaded / requests:,.0f}, less idle {(loaded - idle) / requests:,.0f}")


if __name__ == "__main__":
    main()
