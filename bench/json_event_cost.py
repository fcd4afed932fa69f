"""
Instructions per JSON event, counted by callgrind: the two JSON rows of C{bench/normalize.py}
(C{fastjson.loads} + the compiled template) as a figure other processes on the machine do not move.
Runs itself under C{valgrind --tool=callgrind}, counting only inside C{builtins.any}, which drives
each stage's loop over C{--events} texts after a warm-up pass; prints instructions per event.

Stages: the bench's JSON alert (C{bench/inputs.py}) under C{generic-json}, its plain reference
(C{bench/reference.py}), and the 2.5 KB PagerDuty v3 incident fixture under C{pagerduty}. Run it
against two trees (C{PYTHONPATH} naming the one measured, as for C{bench/cef_frame_cost.py}): the
code and its templates come from that tree, the texts and the reference from this script's. Each
count runs with a fixed hash seed and the heap frozen after the warm-up.

Run: C{.venv/bin/python bench/json_event_cost.py [--events N]}
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any, Callable

from procs import instructions_inside_any, loop_inside_any

BENCH = Path(__file__).resolve().parent
PROJECT = BENCH.parent
NOW = 1778230800.0
PAGERDUTY = PROJECT / "tests" / "fixtures" / "webhooks" / "pagerduty" / "v3-incident-triggered.json"
STAGES = ("generic-json", "reference", "pagerduty")


def _steps() -> tuple[dict[str, Callable[[str], Any]], dict[str, list[str]]]:
    sys.path.append(str(PROJECT))  # after PYTHONPATH: the measured tree's aisoc_inboxd comes first
    import aisoc_inboxd
    from aisoc_inboxd import fastjson
    from aisoc_inboxd.normalizer import IngestContext, load_templates, normalize_record
    from bench import reference
    from bench.inputs import _alert

    templates = load_templates([Path(aisoc_inboxd.__file__).parents[1] / "templates"])
    rng = random.Random(8)
    alerts = [json.dumps(_alert(rng, n)) for n in range(100)]

    def compiled(template_id: str) -> Callable[[str], Any]:
        template = templates[template_id]
        return lambda text: normalize_record(template, fastjson.loads(text), IngestContext("t", "bench", NOW, raw=text))

    steps = {"generic-json": compiled("generic-json"), "pagerduty": compiled("pagerduty"),
             "reference": lambda text: reference.json_alert(text, NOW, loads=fastjson.loads)}
    items = {"generic-json": alerts, "reference": alerts, "pagerduty": [PAGERDUTY.read_text()]}
    return steps, items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--events", type=int, default=1000, help="events counted per stage")
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)  # the run under callgrind
    args = parser.parse_args()
    if args.stage:  # the measured loop, under callgrind
        steps, items = _steps()
        loop_inside_any(steps[args.stage], items[args.stage], args.events)
        return
    counts = {stage: instructions_inside_any(__file__, "--stage", stage, "--events", str(args.events))
              for stage in STAGES}
    print("| stage | instructions per event |\n|---|---:|")
    print("\n".join(f"| {stage} | {count / args.events:,.0f} |" for stage, count in counts.items()))
    import aisoc_inboxd
    print(f"\n{Path(aisoc_inboxd.__file__).parents[1]}")


if __name__ == "__main__":
    main()
