"""
Per-event CPU cost of the normalizer in one process, without the network or a sink: each input is
run through its template (and, for CEF, through the parsers first) N times, and the best of a few
runs is reported as µs per event, so that changes to the hot path can be compared run to run.

Paths: a 2.5 KB PagerDuty v3 incident (pagerduty), the bench's JSON alert (generic-json, the NDJSON
and HEC rows), the bench's CEF lines (cef-syslog, the CEF over HTTPS row) and its RFC 5424 frames
(cef-syslog, the syslog rows), the latter two split into stages: the parsers alone, the parsers
and the record built from them, the normalizer alone on prebuilt records, and the whole frame →
OCSF dict, the frame stages both through the two-stage reference (C{frame_record}) and the one-pass
reader (C{read_frame}), and the frame through the fused path the listeners run (C{frame_parts} and
the template's fused function, no record between). Every normalizing stage is timed twice in the same run: with the template interpreter
(C{normalize_record(..., interpret=True)}, the code before compiled templates) and with the
function generated for the template at load. The JSON alert and the frame are also timed through
L{bench.reference}: the same events written straight in plain Python (checked equal at start), the
floor the ratio is read against. The JSON rows are timed twice: decoded by the stdlib's C{json.loads}
(the figure earlier RESULTS rows give) and by the daemon's own decoder, L{fastjson.loads} (orjson
under the daemon's rules: what every JSON intake runs), the reference given the same decoder on
each row.

Run: C{.venv/bin/python bench/normalize.py [--events N] [--runs R]}
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from functools import partial
from typing import Any, Callable

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from aisoc_inboxd import fastjson
from aisoc_inboxd.formats.cef import parse_cef_line
from aisoc_inboxd.formats.cef_records import read_cef
from aisoc_inboxd.normalizer import IngestContext, load_templates, normalize_record
from aisoc_inboxd.formats.syslog import parse_syslog
from aisoc_inboxd.formats.cef_events import fused_events
from aisoc_inboxd.formats.syslog_cef import frame_parts, read_frame
from aisoc_inboxd.formats.syslog_records import frame_record
from bench import reference
from bench.inputs import _alert, _cef, _syslog

NOW = 1778230800.0
PAGERDUTY = PROJECT / "tests" / "fixtures" / "webhooks" / "pagerduty" / "v3-incident-triggered.json"


def _best_us(steps: list[Callable[[Any], Any]], items: list[Any], events: int, runs: int) -> list[float]:
    """
    µs per item of each of C{steps} over C{events} items (C{items} cycled), best of C{runs}; the
    steps take turns run by run, so that a neighbour's load on a shared machine falls on all alike.
    """
    work = (items * (events // len(items) + 1))[:events]
    best = [float("inf")] * len(steps)
    for _ in range(runs):
        for position, step in enumerate(steps):
            start = time.perf_counter()
            for item in work:
                step(item)
            best[position] = min(best[position], time.perf_counter() - start)
    return [seconds / events * 1e6 for seconds in best]


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

    def normalize(template_id: str, interpret: bool) -> Callable[[Any], Any]:
        template = templates[template_id]

        def run(record: Any) -> Any:
            context = IngestContext("t", "bench", NOW, raw=record.raw)
            return normalize_record(template, record.data, context, interpret=interpret)

        return run

    def json_record(template_id: str, interpret: bool, loads: Callable[[str], Any] = json.loads) -> Callable[[str], Any]:
        template = templates[template_id]
        return lambda text: normalize_record(template, loads(text), IngestContext("t", "bench", NOW, raw=text),
                                             interpret=interpret)

    def frame_to_event(interpret: bool, read: Callable[[bytes, float], Any] = frame_record) -> Callable[[bytes], Any]:
        run = normalize("cef-syslog", interpret)
        return lambda frame: run(read(frame, NOW).record)

    fused = fused_events(templates["cef-syslog"])

    def fused_frame_to_event(interpret: bool) -> Callable[[bytes], Any]:
        """The listeners' path: the one-pass parse's parts straight to the event (interpreted: its records)."""
        if interpret:
            return frame_to_event(True, read_frame)
        return lambda frame: (fused.event(frame_parts(frame, NOW), "t", "bench", NOW),)

    _check_reference(json_record("generic-json", False), reference.json_alert, alerts)
    _check_reference(json_record("generic-json", False, fastjson.loads),
                     partial(reference.json_alert, loads=fastjson.loads), alerts)
    _check_reference(fused_frame_to_event(False), reference.cef_frame, frames)
    _check_reference(frame_to_event(False), reference.cef_frame, frames)
    _check_reference(frame_to_event(False, read_frame), reference.cef_frame, frames)
    rows: list[tuple[str, str, Callable[[bool], Callable[[Any], Any]], Callable[[Any], Any] | None, list[Any]]] = [
        ("pagerduty v3 incident (2.5 KB)", "json.loads + normalize", partial(json_record, "pagerduty"), None,
         [pagerduty_text]),
        ("", "fastjson.loads + normalize", partial(json_record, "pagerduty", loads=fastjson.loads), None,
         [pagerduty_text]),
        ("generic-json bench alert", "json.loads + normalize", partial(json_record, "generic-json"),
         partial(reference.json_alert, now=NOW), alerts),
        ("", "fastjson.loads + normalize", partial(json_record, "generic-json", loads=fastjson.loads),
         partial(reference.json_alert, now=NOW, loads=fastjson.loads), alerts),
        ("CEF line (HTTPS route)", "parse_cef_line", lambda _: parse_cef_line, None, lines),
        ("", "read_cef (parse + record)", lambda _: lambda line: read_cef(line, NOW), None, lines),
        ("", "normalize", partial(normalize, "cef-syslog"), None, cef_records),
        ("syslog RFC 5424 CEF frame", "parse_syslog", lambda _: lambda frame: parse_syslog(frame.decode(), NOW),
         None, frames),
        ("", "frame_record (both parsers)", lambda _: lambda frame: frame_record(frame, NOW), None, frames),
        ("", "read_frame (one pass)", lambda _: lambda frame: read_frame(frame, NOW), None, frames),
        ("", "normalize", partial(normalize, "cef-syslog"), None, frame_records),
        ("", "frame → OCSF dict", frame_to_event, partial(reference.cef_frame, now=NOW), frames),
        ("", "frame → OCSF dict, one pass", partial(frame_to_event, read=read_frame),
         partial(reference.cef_frame, now=NOW), frames),
        ("", "frame → OCSF dict, fused", fused_frame_to_event, partial(reference.cef_frame, now=NOW), frames),
    ]
    print(f"{'path':<32} {'stage':<28} {'interpreted':>11} {'compiled':>9} {'reference':>9}  µs/event")
    for path, stage, step, plain, items in rows:
        interpreted, compiled, *floor = _best_us([step(True), step(False), *([plain] if plain else [])],
                                                 items, args.events, args.runs)
        shown = "".join(f"{us:>9.1f}" for us in floor) or f"{'':>9}"
        print(f"{path:<32} {stage:<28} {interpreted:>11.1f} {compiled:>9.1f} {shown}")


def _check_reference(ours: Callable[[Any], Any], plain: Callable[..., Any], items: list[Any]) -> None:
    """
    The reference path must make the very events the normalizer makes (uids aside), or the ratio
    would compare different work.
    """
    for item in items:
        (event,) = ours(item)
        if _without_uid(event) != _without_uid(plain(item, NOW)):
            raise SystemExit(f"bench/reference.py no longer matches the normalizer for {item!r}")


def _without_uid(event: dict[str, Any]) -> str:
    uid = event["metadata"].pop("uid")
    text = json.dumps(event)
    event["metadata"]["uid"] = uid
    return text.replace(uid, "UID")


if __name__ == "__main__":
    main()
