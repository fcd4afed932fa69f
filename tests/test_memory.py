"""
The daemon's processes fix glibc's mmap and trim thresholds (L{aisoc_inboxd.memory}), so the memory
of large transient buffers goes back to the system after a peak instead of staying resident.
"""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.shared import PROJECT

#: allocate and free an 8 MiB block (which raises glibc's thresholds unless they are fixed), then
#: 48 MiB in 256 KiB blocks, each followed by a small block that lives on (as the daemon's heap
#: interleaves long-lived objects), and free the large ones; print how much more is resident than before
_PEAK = """
import re, sys
from aisoc_inboxd.memory import bound_malloc_heap
def rss():
    return int(re.search(r"VmRSS:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) // 1024
if sys.argv[1] == "bounded":
    assert bound_malloc_heap()
before = rss()
block = bytearray(8 << 20)
del block
blocks, kept = [], []
for _ in range(192):
    blocks.append(bytearray(256 << 10))
    kept.append(bytearray(1024))
del blocks
print(rss() - before)
"""


def _kept_after_peak(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", _PEAK, mode], cwd=PROJECT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_a_bounded_heap_gives_back_a_transient_peak() -> None:
    """With the thresholds fixed, 48 MiB of 256 KiB buffers freed leave (almost) nothing resident; with
    glibc's own raising thresholds, the same peak stays resident (what the daemon's processes did)."""
    assert _kept_after_peak("bounded") < 4
    assert _kept_after_peak("glibc") > 32
