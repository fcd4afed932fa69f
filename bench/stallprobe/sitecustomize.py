"""
A probe loaded into the daemon and its workers by C{bench/tail.py --probe} (this directory first on
C{PYTHONPATH}; Python imports C{sitecustomize} at start-up): what stops the reactor thread.

- every garbage collection, timed (C{gc.callbacks}): count, total and longest pause per generation,
  wall and the thread's CPU time (which the neighbours' load does not stretch), and each gen-2 one;
- a heartbeat the reactor writes every millisecond and a watchdog thread that, when the heartbeat is
  older than L{STALL_MS}, samples the reactor thread's stack (C{sys._current_frames}) every
  L{STALL_MS} while the stall lasts, so each stall of the loop is counted with the code that held it
  and whether a gen-2 collection ended in it.

Every second it writes C{$AISOC_STALLPROBE_DIR/PID.json}. C{AISOC_STALLPROBE_GC_THRESHOLD=7000,10,10}
tries other collector thresholds. Bench only: nothing here is the daemon's.
"""
from __future__ import annotations

import collections
import gc
import json
import os
import sys
import threading
import time
import traceback

STALL_MS = float(os.environ.get("AISOC_STALLPROBE_MS", "10"))
_OUT = os.environ.get("AISOC_STALLPROBE_DIR")

_gc_started = _gc_cpu_started = 0.0
_gc = {g: {"count": 0, "total_ms": 0.0, "max_ms": 0.0, "over_5ms": 0, "cpu_total_ms": 0.0, "cpu_max_ms": 0.0}
       for g in range(3)}
_gc_log: collections.deque[tuple[float, float, float, int]] = collections.deque(maxlen=200)
_beat = [time.monotonic()]
_stalls: collections.Counter[str] = collections.Counter()
_stall_ms: list[float] = []
_stall_with_gc2 = [0]
_last_gc2_end = [0.0]


def _on_gc(phase: str, info: dict[str, int]) -> None:
    global _gc_started, _gc_cpu_started
    if phase == "start":
        _gc_started, _gc_cpu_started = time.perf_counter(), time.thread_time()
        return
    ms = (time.perf_counter() - _gc_started) * 1000
    cpu_ms = (time.thread_time() - _gc_cpu_started) * 1000
    stats = _gc[info["generation"]]
    stats["cpu_total_ms"] += cpu_ms
    stats["cpu_max_ms"] = max(stats["cpu_max_ms"], cpu_ms)
    stats["count"] += 1
    stats["total_ms"] += ms
    stats["max_ms"] = max(stats["max_ms"], ms)
    stats["over_5ms"] += ms > 5
    if info["generation"] == 2:
        _last_gc2_end[0] = time.monotonic()
        _gc_log.append((round(time.monotonic(), 2), round(ms, 2), round(cpu_ms, 2), info["collected"]))


def _stack(frame: object) -> str:
    lines = traceback.format_stack(frame)[-12:]  # type: ignore[arg-type]
    return "".join(line.split("\n")[0].replace(os.getcwd() + "/", "") + "\n" for line in lines)


def _watch() -> None:
    reactor_thread = None
    heartbeat_on = False
    in_stall = False
    stall_started = next_sample = 0.0
    written = time.monotonic()
    while True:
        time.sleep(0.002)
        module = sys.modules.get("twisted.internet.reactor")
        if not heartbeat_on and module is not None and getattr(module, "running", False):
            reactor = module
            reactor_thread = next((t.ident for t in threading.enumerate() if t.name == "MainThread"), None)

            def start_beat() -> None:
                from twisted.internet.task import LoopingCall

                def beat() -> None:
                    _beat[0] = time.monotonic()
                LoopingCall(beat).start(0.001)
            reactor.callFromThread(start_beat)  # type: ignore[attr-defined]
            heartbeat_on = True
        now = time.monotonic()
        if heartbeat_on:
            late = (now - _beat[0]) * 1000
            if late > STALL_MS and now >= next_sample:
                if not in_stall:
                    in_stall, stall_started = True, _beat[0]
                next_sample = now + STALL_MS / 1000
                frame = sys._current_frames().get(reactor_thread)  # type: ignore[arg-type]
                if frame is not None:
                    _stalls[_stack(frame)] += 1
            elif late <= STALL_MS and in_stall:
                in_stall = False
                _stall_ms.append(round((_beat[0] - stall_started) * 1000, 1))
                _stall_with_gc2[0] += _last_gc2_end[0] > stall_started
        if _OUT and now - written > 1.0:
            written = now
            _write()


def _write() -> None:
    stalls = sorted(_stall_ms)
    report = {"pid": os.getpid(), "argv": sys.argv, "gc": _gc, "gc2_log": list(_gc_log), "gc_counts": gc.get_count(),
              "gc_threshold": gc.get_threshold(), "gc_freeze_count": gc.get_freeze_count(),
              "stalls": len(stalls), "stalls_with_gc2": _stall_with_gc2[0],
              "stall_ms_max": stalls[-1] if stalls else 0, "stall_ms": stalls[-50:],
              "stall_stacks": _stalls.most_common(15)}
    path = os.path.join(_OUT, f"{os.getpid()}.json")  # type: ignore[arg-type]
    with open(path + ".tmp", "w") as out:
        json.dump(report, out, indent=1)
    os.replace(path + ".tmp", path)


if _OUT and ("aisoc" in " ".join(sys.argv) or "inboxd" in " ".join(sys.argv)):
    if os.environ.get("AISOC_STALLPROBE_GC_THRESHOLD"):  # e.g. "7000,10,10": try other thresholds
        gc.set_threshold(*map(int, os.environ["AISOC_STALLPROBE_GC_THRESHOLD"].split(",")))
    gc.callbacks.append(_on_gc)
    threading.Thread(target=_watch, name="stallprobe", daemon=True).start()
