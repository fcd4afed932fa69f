"""
Per-event CPU cost of the normalizer in one process, without the network or a sink: each input is
run through its template (and, for CEF, through the parsers first) N times, and the best of a few
runs is reported as µs per event, so that changes to the hot path can be compared run to run.

Paths: a 2.5 KB PagerDuty v3 incident (pagerduty), the bench's JSON alert (generic-json, the NDJSON
and HEC rows), the bench's CEF lines (cef-syslog, the CEF over HTTPS row) and its RFC 5424 frames
(cef-syslog, the syslog rows), the latter two split into stages: the parsers alone, the parsers
and the record built from them, and the normalizer alone on prebuilt records.

Run: C{.venv/bin/python bench/normalize.py [--events N] [--runs R]}
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from aisoc_inboxd.formats.cef import parse_cef_line
from aisoc_inboxd.formats.cef_records import read_cef
from aisoc_inboxd.normalizer import IngestContext, load_templates, normalize_record
from aisoc_inboxd.formats.syslog import parse_syslog
from aisoc_inboxd.formats.syslog_records import frame_record
from bench.inputs import _alert, _cef, _syslog

NOW = 1778230800.0
PAGERDUTY = PROJECT / "tests" / "fixtures" / "webhooks" / "pagerduty" / "v3-incident-triggered.json"


def _best_us(step: Callable[[Any], Any], items: list[Any], events: int, runs: int) -> float:
    """µs per item of C{step} over C{events} items (C{items} cycled), best of C{runs}."""
    work = (items * (events // len(items) + 1))[:events]
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        for item in work:
            step(item)
        best = min(best, time.perf_counter() - start)
    return best / events * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000, help="events per run")
    parser.add_argument("--runs", type=int, default=5, help="runs per path; the best is reported")
    args = parser.parse_args()

    templates = load_templates([PROJECT / "templates"])
    rng = random.Random(8)
    pagerduty_text = PAGERDUTY.read_text()
    alerts = [json.dumps(_alert(rng, n)) for n in range(100)]
    lines = [_cef(rng, n) for n in range(100)]
    frames = [_syslog(line, n).encode() for n, line in enumerate(lines)]
    cef_records = [read_cef(line, NOW) for line in lines]
    frame_records = [frame_record(frame, NOW).record for frame in frames]

    def normalize(template_id: str) -> Callable[[Any], Any]:
        template = templates[template_id]

        def run(record: Any) -> Any:
            context = IngestContext("t", "bench", NOW, raw=record.raw)
            return normalize_record(template, record.data, context)

        return run

    def json_record(template_id: str) -> Callable[[str], Any]:
        template = templates[template_id]
        return lambda text: normalize_record(template, json.loads(text), IngestContext("t", "bench", NOW, raw=text))

    rows = [
        ("pagerduty v3 incident (2.5 KB)", "normalize", json_record("pagerduty"), [pagerduty_text]),
        ("generic-json bench alert", "normalize", json_record("generic-json"), alerts),
        ("CEF line (HTTPS route)", "parse_cef_line", parse_cef_line, lines),
        ("", "read_cef (parse + record)", lambda line: read_cef(line, NOW), lines),
        ("", "normalize", normalize("cef-syslog"), cef_records),
        ("syslog RFC 5424 CEF frame", "parse_syslog", lambda frame: parse_syslog(frame.decode(), NOW), frames),
        ("", "frame_record (both parsers)", lambda frame: frame_record(frame, NOW), frames),
        ("", "normalize", normalize("cef-syslog"), frame_records),
    ]
    print(f"{'path':<32} {'stage':<28} {'µs/event':>9}")
    for path, stage, step, items in rows:
        print(f"{path:<32} {stage:<28} {_best_us(step, items, args.events, args.runs):>9.1f}")


if __name__ == "__main__":
    main()
