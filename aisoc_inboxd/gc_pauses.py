"""
Keep the garbage collector's full (gen-2) collections short in a serving process.

What start-up builds (the OCSF schema, the compiled templates, modules, configuration) lives as
long as the process, and every gen-2 collection walked all of it with the reactor stopped: 50–155 ms
each, every 1.5–4 s under single-event webhook load, which made the webhook's p99 (bench/tail.py
with its stall probe, bench/RESULTS.md "Tail latency"). C{gc.freeze()} moves those objects to the
permanent generation, which collections do not walk; everything allocated later is freed as before
(reference counting at once, reference cycles by the generational collections).

A frozen object is never collected, so what a reload replaces (the old catalog) would stay forever
if it is in reference cycles: L{refreeze} thaws, collects and freezes again after a reload.
"""
from __future__ import annotations

import gc

from twisted.logger import Logger

_log = Logger()


def freeze_startup_heap() -> int:
    """
    Collect start-up's garbage, then freeze what is left out of the collector's walks; return how
    many objects were frozen. Called once a process serves, not in tests' shared interpreters.
    """
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    _log.info("start-up heap frozen: {frozen} objects left out of the garbage collector's full walks",
              frozen=frozen)
    return frozen


def refreeze() -> None:
    """
    After a reload, in a process that froze its start-up heap: let what the reload replaced be
    collected, and freeze what replaced it. One full collection's pause, once per reload.
    """
    if gc.get_freeze_count():
        gc.unfreeze()
        freeze_startup_heap()
