"""
Instructions per RFC 5424 CEF frame, stage by stage, counted by callgrind: a figure other processes
on the machine do not move (µs do, on a shared 2-core machine). Runs itself under
C{valgrind --tool=callgrind}, counting only inside C{builtins.any}, which drives each stage's loop
over C{--frames} bench frames (C{bench/inputs.py}) after a warm-up pass; prints instructions per frame.

Stages: C{read_frame} alone, the compiled C{cef-syslog} on prebuilt records, the two together (what
a listener does per frame), the fused path (C{aisoc_inboxd.formats.cef_events}, in a tree that has
it; the two together for the frames it leaves), and the plain reference (C{bench/reference.py}). Run it against two trees
(C{PYTHONPATH} naming the one measured, as for C{bench/batch_path.py}): the code and its templates
come from that tree, the frames and the reference from this script's. Each count runs with a fixed
hash seed and the heap frozen after the warm-up, so the same code counts the same within ~0.1 %.

Run: C{.venv/bin/python bench/cef_frame_cost.py [--frames N]}
"""
from __future__ import annotations

import argparse
import importlib.util
import random
import sys
from datetime import UTC
from pathlib import Path
from typing import Any, Callable

from procs import instructions_inside_any, loop_inside_any

BENCH = Path(__file__).resolve().parent
PROJECT = BENCH.parent
NOW = 1778230800.0
STAGES = ("read_frame", "normalize", "frame → OCSF dict", "fused frame → OCSF dict", "reference")


def _steps() -> tuple[dict[str, Callable[[Any], Any]], dict[str, list[Any]]]:
    sys.path.append(str(PROJECT))  # after PYTHONPATH: the measured tree's aisoc_inboxd comes first
    import aisoc_inboxd
    from aisoc_inboxd.formats.syslog_cef import read_frame
    from aisoc_inboxd.normalizer import IngestContext, load_templates, normalize_record
    from bench import reference
    from bench.inputs import _cef, _syslog

    template = load_templates([Path(aisoc_inboxd.__file__).parents[1] / "templates"])["cef-syslog"]
    rng = random.Random(8)
    frames = [_syslog(_cef(rng, n), n).encode() for n in range(100)]
    records = [read_frame(frame, NOW).record for frame in frames]

    def normalize(record: Any) -> Any:
        return normalize_record(template, record.data, IngestContext("t", "bench", NOW, raw=record.raw))

    def one_pass(frame: bytes) -> Any:
        return normalize(read_frame(frame, NOW).record)

    steps = {"read_frame": lambda frame: read_frame(frame, NOW), "normalize": normalize,
             "frame → OCSF dict": one_pass, "fused frame → OCSF dict": _fused(template, one_pass),
             "reference": lambda frame: reference.cef_frame(frame, NOW)}
    items = {stage: records if stage == "normalize" else frames for stage in STAGES}
    return steps, items


def _fused(template: Any, one_pass: Callable[[bytes], Any]) -> Callable[[bytes], Any] | None:
    """
    The fused path (C{aisoc_inboxd.formats.cef_events}) as a listener would take it, the one pass
    for the frames it leaves; None in a tree that has none.
    """
    if importlib.util.find_spec("aisoc_inboxd.formats.cef_events") is None:
        return None
    from aisoc_inboxd.formats.cef_events import fused_events
    from aisoc_inboxd.formats.syslog_cef import frame_parts
    events = fused_events(template)

    def fused(frame: bytes) -> Any:
        parts = frame_parts(frame, NOW, UTC)
        made = None if parts is None else events.event(parts, "t", "bench", NOW)
        return one_pass(frame) if made is None else made
    return fused


def _run(stage: str, frames: int) -> None:
    steps, items = _steps()
    loop_inside_any(steps[stage], items[stage], frames)


def _instructions(stage: str, frames: int) -> int:
    return instructions_inside_any(__file__, "--stage", stage, "--frames", str(frames))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--frames", type=int, default=1000, help="frames counted per stage")
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)  # the run under callgrind
    args = parser.parse_args()
    if args.stage:
        _run(args.stage, args.frames)
        return
    print("| stage | instructions per frame |\n|---|---:|")
    fused = importlib.util.find_spec("aisoc_inboxd.formats.cef_events") is not None
    for stage in STAGES if fused else (stage for stage in STAGES if not stage.startswith("fused")):
        print(f"| {stage} | {_instructions(stage, args.frames) / args.frames:,.0f} |")
    import aisoc_inboxd
    print(f"\n{Path(aisoc_inboxd.__file__).parents[1]}")


if __name__ == "__main__":
    main()
