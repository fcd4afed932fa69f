"""
Instructions per single-event webhook request, counted by callgrind: a figure the other processes
on the machine do not move, for before/after comparisons of the per-request path (issue 14.4).

Starts the daemon (file sink, one process) under C{valgrind --tool=callgrind} with instrumentation
off, turns it on once the daemon is ready, drives it with wrk for a warm-up, counts C{--seconds}
idle (timers), then C{--seconds} under wrk, and prints the instructions (Ir) of the whole process
(every thread: the reactor and the sink's fsync thread) per request served, with and without the
idle count (under valgrind the daemon is ~50x slower, so its timers weigh more than natively).
Point C{PYTHONPATH} at the tree to measure.

With C{--stages}, the daemon runs through C{stage_launch.py}: each stage of a request (the head's
lines, the route, token resolution, the body's decoding, normalizing, the sink's write and group
commit, the reply, the delivery record, the log line, the reactor's reads and writes) is called
through a C function of its own (C{stages.c}, built with gcc), and the loaded run's instructions
are printed per stage and per request, inclusive of what each stage calls (so nested stages add up
within their parent, not with it). The wrappers cost a Python call per stage call: compare the
total with a run without C{--stages}.

Run: C{.venv/bin/python bench/request_cost.py [--seconds S] [--connections C] [--keep FILE] [--stages]}
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from procs import Processes, callgrind_instructions, wait_until
from run import check_tools, wrk
from targets import INBOXD, PROJECT, Daemon
from inputs import write_inputs

BENCH = Path(__file__).resolve().parent


def control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True, timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the counted load")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections")
    parser.add_argument("--keep", type=Path, help="copy the loaded run's callgrind dump here (for callgrind_annotate)")
    parser.add_argument("--stages", action="store_true", help="count each stage of a request apart")
    args = parser.parse_args()
    check_tools({"wrk": "wrk", "valgrind": "valgrind", "callgrind_control": "valgrind"})
    work = Path(tempfile.mkdtemp(prefix="aisoc-request-cost-"))
    (work / "logs").mkdir()
    inputs = write_inputs(work, 10, (1,))
    daemon = Daemon(work / "inboxd", "file", None)
    daemon.write_config()
    token = daemon.mint("generic-json")
    out = work / "callgrind.out"
    program, env = [str(INBOXD)], None
    if args.stages:
        program, env = [sys.executable, str(BENCH / "stage_launch.py")], {"PYTHONPATH": os.pathsep.join(
            filter(None, [str(build_stages(work)), os.environ.get("PYTHONPATH"), str(PROJECT)]))}
    with Processes(work / "logs") as processes:
        daemon.process = processes.start(daemon.name, [
            "valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
            *program, "--config", str(daemon.config), "run"], env=env, cwd=PROJECT)
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
    requests = result["requests"]
    print(f"requests {requests:.0f} (non-2xx {result['non_2xx']:.0f}); instructions idle {idle:,}, loaded "
          f"{loaded:,}; per request {loaded / requests:,.0f}, less idle {(loaded - idle) / requests:,.0f}")
    if args.stages:
        for name, instructions in stage_instructions(work / "callgrind.out.2").items():
            print(f"  {name:<24} {instructions / requests:>12,.0f}")
    shutil.rmtree(work)


def build_stages(work: Path) -> Path:
    """
    Build C{stages.c} into C{work/stages}, the directory to put on the daemon's C{PYTHONPATH}.
    """
    include, suffix = (sysconfig.get_paths()["include"], sysconfig.get_config_var("EXT_SUFFIX"))
    built = work / "stages"
    built.mkdir()
    subprocess.run(["gcc", "-O0", "-shared", "-fPIC", f"-I{include}", str(BENCH / "stages.c"),
                    "-o", str(built / f"callgrind_stages{suffix}")], check=True)
    return built


#: C functions the reactor's system calls run in, counted beside the stages
SYSTEM_CALLS = ("select_epoll_poll", "select_epoll_modify", "sock_recv", "sock_send", "os_fsync", "os_write")


def stage_instructions(dump: Path) -> dict[str, int]:
    """
    The inclusive instructions of each C{stage_*} function (and of L{SYSTEM_CALLS}) in C{dump}.
    """
    annotated = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", str(dump)],
                               check=True, capture_output=True, text=True).stdout
    found: dict[str, int] = {}
    for line in annotated.splitlines():
        counted = re.match(r"\s*([\d,]+)\s+(?:\([^)]*\)\s+)?\S*:(stage_\w+|\w+)\b", line)
        if counted and (counted.group(2).startswith("stage_") or counted.group(2) in SYSTEM_CALLS):
            found.setdefault(counted.group(2), int(counted.group(1).replace(",", "")))
    return found


if __name__ == "__main__":
    main()
