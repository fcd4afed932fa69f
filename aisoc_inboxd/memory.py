"""
How a daemon process asks glibc's allocator to give back the memory of large transient buffers.

glibc serves a block of 128 KiB or more with its own mmap and unmaps it when freed, but raises that
threshold (up to 32 MiB) each time such a block is freed, and with it the size past which the heap's
free top is trimmed. Under load the daemon frees many large buffers (socket reads, request bodies,
batches of encoded events, librdkafka's produce buffers), so the threshold soon sits high, those
buffers come from the heap instead, and the heap keeps their peak resident for good: 10 MiB or more
a process in the overload soak (bench/RESULTS.md, "Memory with workers"). Setting both thresholds
fixes them and turns the raising off.
"""
from __future__ import annotations

import ctypes
import ctypes.util

#: mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

#: blocks from this size on get their own mapping, given back when freed (glibc's starting value)
MMAP_THRESHOLD = 128 * 1024
#: the heap's free top past this is given back
TRIM_THRESHOLD = 1024 * 1024


def bound_malloc_heap() -> bool:
    """
    Fix glibc's mmap and trim thresholds for this process (its threads included); whether it
    could (not under another C library, which has no C{mallopt}).
    """
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        return False
    if mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
