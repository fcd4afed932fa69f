"""
The bench's processes: started in their own sessions, measured through /proc, and always stopped.

L{Processes} is a context manager: leaving it (normally, on an error or on Ctrl-C) stops every
process it started, newest first, with SIGTERM and then SIGKILL (to its process group, so a daemon's
worker processes too), so a run leaves nothing behind. CPU time and RSS (peak, current) cover a
process's whole tree: it and its live descendants.
"""
from __future__ import annotations

import gc
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, Sequence

_TICKS = os.sysconf("SC_CLK_TCK")


class Processes:
    def __init__(self, logs: Path) -> None:
        self._logs = logs
        self._started: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None,
              cwd: Path | None = None) -> subprocess.Popen[bytes]:
        """
        Start C{argv} in a new session (so Ctrl-C reaches only the bench, which stops it in order),
        with stdout and stderr in C{logs/name.log}.
        """
        with (self._logs / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                       env={**os.environ, **(env or {})}, cwd=cwd,
                                       start_new_session=True)
        self._started.append((name, process))
        return process

    def stop(self, pid: int, timeout: float = 15.0) -> None:
        """
        SIGTERM the process C{pid} (started here), SIGKILL it after C{timeout} seconds.
        """
        for _, process in self._started:
            if process.pid == pid:
                self._stop(process, timeout)

    def _stop(self, process: subprocess.Popen[bytes], timeout: float) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)  # its own session: a daemon's workers go too
                process.wait()
        self._started = [(n, p) for n, p in self._started if p is not process]

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        for _, process in reversed(self._started):
            self._stop(process, 15.0)


def descendants(pid: int) -> list[int]:
    """
    The live descendants of C{pid} (a daemon's worker processes and theirs), from each thread's
    C{/proc/<pid>/task/<tid>/children}, parents first.
    """
    found: list[int] = []
    parents = [pid]
    while parents:
        parent = parents.pop(0)
        try:
            tasks = list(Path(f"/proc/{parent}/task").iterdir())
        except OSError:
            continue  # exited meanwhile
        for task in tasks:
            try:
                children = [int(child) for child in (task / "children").read_text().split()]
            except OSError:
                continue
            found += children
            parents += children
    return found


def _over_tree(pid: int, read: Callable[[int], float]) -> float:
    """
    C{read} summed over C{pid} and its live descendants; a descendant that exited meanwhile adds 0.
    """
    total = read(pid)
    for child in descendants(pid):
        try:
            total += read(child)
        except OSError:
            pass
    return total


def cpu_seconds(pid: int) -> float:
    """
    User plus system CPU time so far of C{pid}, its live descendants and the children each reaped.
    """
    return _over_tree(pid, _cpu_seconds)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return (utime + stime + cutime + cstime) / _TICKS


def reset_peak_rss(pid: int) -> None:
    """
    Restart the VmHWM of C{pid} and of each live descendant from its current RSS (Linux: C{clear_refs}
    5), so a row's peak is its own.
    """
    for each in (pid, *descendants(pid)):
        try:
            Path(f"/proc/{each}/clear_refs").write_text("5")
        except OSError:
            pass  # not permitted (or exited): the peak then covers the process's life so far


def peak_rss_mib(pid: int) -> float:
    """
    The peak RSS of C{pid} plus those of its live descendants: a sum of each process's own peak.
    """
    return _over_tree(pid, lambda each: _status_mib(each, "VmHWM:"))


def rss_mib(pid: int) -> float:
    """
    The current RSS of C{pid} plus those of its live descendants (their C{VmRSS}, summed).
    """
    return _over_tree(pid, lambda each: _status_mib(each, "VmRSS:"))


def _status_mib(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) / 1024
    return 0.0  # a zombie has no memory left


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


#: the instructions of every thread since the counters were zeroed, in a callgrind dump
_CALLGRIND_SUMMARY = re.compile(rb"^summary: (\d+)", re.MULTILINE)


def callgrind_instructions(dump: Path) -> int:
    """
    The instructions a callgrind dump counted (its C{summary:} line).
    """
    counted = _CALLGRIND_SUMMARY.search(dump.read_bytes())
    assert counted is not None, f"callgrind wrote no summary in {dump}"
    return int(counted.group(1))


def instructions_inside_any(script: str, *args: str) -> int:
    """
    The instructions C{script} (run with C{args} under C{valgrind --tool=callgrind}, by this
    interpreter, with a fixed hash seed) spends inside C{builtins.any}, the loop it measures.
    """
    with tempfile.TemporaryDirectory() as work:
        out = Path(work) / "callgrind.out"
        subprocess.run(["valgrind", "--tool=callgrind", "--collect-atstart=no", "--toggle-collect=builtin_any",
                        f"--callgrind-out-file={out}", sys.executable, script, *args], check=True,
                       capture_output=True, env={**os.environ, "PYTHONHASHSEED": "0"})
        return callgrind_instructions(out)


def loop_inside_any(step: Callable[[Any], Any], items: Sequence[Any], count: int) -> None:
    """
    The loop L{instructions_inside_any} counts: C{step} over C{count} of C{items} (cycled) inside
    C{any} (its steps never stop it), after a warm-up pass (regexes compiled, caches filled) and
    with the heap frozen (no full collection walks the start-up heap inside the count).
    """
    work = (list(items) * (count // len(items) + 1))[:count]
    for item in work[:100]:
        step(item)
    gc.collect()
    gc.freeze()
    any(step(item) is None for item in work)
