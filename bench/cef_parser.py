"""
Throughput of the CEF parser in one process: each CEF fixture file's lines repeated into one batch,
split into lines (L{cef_lines}) and parsed (L{parse_cef_line}), malformed ones skipped as the intakes
do, reported as lines per second (best of a few runs, to damp noise).

Run: C{.venv/bin/python bench/cef_parser.py [--lines N] [--runs R]}
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from aisoc_inboxd.formats.cef import CefError, cef_lines, parse_cef_line

SOURCES = [
    *sorted((PROJECT / "tests" / "fixtures" / "cef").glob("*.txt")),
    PROJECT / "tests" / "fixtures" / "syslog" / "sc4s-vendor-cef-frames.txt",
    PROJECT / "tests" / "fixtures" / "syslog" / "fortiweb-cloud-cef-bsd-prefix.txt",
]


def _batch(lines: list[bytes], total: int) -> bytes:
    """C{lines} repeated until the batch holds C{total} lines."""
    repeated = (lines * (total // len(lines) + 1))[:total]
    return b"\n".join(repeated) + b"\n"


def _parse(body: bytes) -> None:
    for _, line in cef_lines(body):
        try:
            parse_cef_line(line)
        except CefError:
            pass


def _best_rate(body: bytes, total: int, runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        _parse(body)
        best = min(best, time.perf_counter() - start)
    return total / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=100_000, help="lines per batch")
    parser.add_argument("--runs", type=int, default=3, help="runs per batch; the best is reported")
    args = parser.parse_args()

    everything: list[bytes] = []
    print(f"{'corpus file':<40} {'lines':>6} {'avg bytes':>10} {'lines/s':>12} {'MB/s':>7}")
    for path in SOURCES:
        lines = [line for line in path.read_bytes().split(b"\n") if line.strip()]
        everything += lines
        body = _batch(lines, args.lines)
        rate = _best_rate(body, args.lines, args.runs)
        average = sum(map(len, lines)) / len(lines)
        print(f"{path.name:<40} {len(lines):>6} {average:>10.0f} {rate:>12,.0f} {rate * average / 1e6:>7.1f}")
    body = _batch(everything, args.lines)
    rate = _best_rate(body, args.lines, args.runs)
    average = sum(map(len, everything)) / len(everything)
    print(f"{'all of the above, mixed':<40} {len(everything):>6} {average:>10.0f} {rate:>12,.0f} "
          f"{rate * average / 1e6:>7.1f}")


if __name__ == "__main__":
    main()
