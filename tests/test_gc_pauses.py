"""
The start-up heap frozen out of the garbage collector's full walks (aisoc_inboxd/gc_pauses.py), in a
fresh interpreter each: freezing is process-wide, and the test runner's own heap must stay collectable.
"""
from __future__ import annotations

import json
import subprocess
import sys

from tests.support.shared import PROJECT

SCRIPT = """
import gc, json, weakref
from aisoc_inboxd.gc_pauses import freeze_startup_heap, refreeze

class Catalog:
    pass

old = Catalog()
old.me = old  # a reference cycle: only the collector can free it
gone_before_freeze = Catalog()
gone_before_freeze.me = gone_before_freeze
ref_gone, ref_old = weakref.ref(gone_before_freeze), weakref.ref(old)
del gone_before_freeze
frozen = freeze_startup_heap()
del old  # what a reload replaces
gc.collect()
kept_while_frozen = ref_old() is not None
refreeze()
print(json.dumps({"frozen": frozen, "garbage_frozen": ref_gone() is not None, "kept_while_frozen": kept_while_frozen,
                  "collected_after_refreeze": ref_old() is None, "frozen_after": gc.get_freeze_count()}))
"""


def test_freeze_leaves_startup_out_and_refreeze_lets_the_replaced_go() -> None:
    """Freezing collects start-up's garbage first and freezes the rest (a frozen cycle survives a full
    collection: the collector no longer walks it); a refreeze after a reload thaws, so a replaced
    object in a cycle is collected, and freezes again."""
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=PROJECT, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    assert result["frozen"] > 1000
    assert not result["garbage_frozen"]
    assert result["kept_while_frozen"]
    assert result["collected_after_refreeze"]
    assert result["frozen_after"] > 1000


def test_refreeze_does_nothing_where_nothing_was_frozen() -> None:
    """A process that never froze (a test runner applying a reload in process) stays unfrozen."""
    script = "import gc\nfrom aisoc_inboxd.gc_pauses import refreeze\nrefreeze()\nprint(gc.get_freeze_count())"
    out = subprocess.run([sys.executable, "-c", script], cwd=PROJECT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"
