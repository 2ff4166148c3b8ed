"""glibc malloc settings for a process that moves large bodies.

Bodies arrive as bytes objects of up to 256 KiB (uvloop's read size). With
glibc's defaults, such a block is first served by mmap, and freeing it raises
the dynamic mmap threshold; from then on the blocks come from the heap, and the
heap is given back to the kernel (``brk``) whenever its free top exceeds the
trim threshold, about three times per 1 MiB response. Each round trip costs
page faults and zeroed pages. Fixing both thresholds keeps those blocks on a heap
that is not trimmed below ``TRIM_THRESHOLD`` of free memory: the memory a busy
proxy would take again a moment later stays with it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger("turnout")

# mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3

# Blocks below this come from the heap: every read buffer and body chunk.
MMAP_THRESHOLD = 4 * 1024 * 1024
# Free memory kept at the top of the heap before it is returned to the kernel.
TRIM_THRESHOLD = 32 * 1024 * 1024
# The heap grows in steps of this much, so a burst of large bodies is one brk.
TOP_PAD = 4 * 1024 * 1024


def tune_malloc() -> bool:
    """Apply the settings; False where the C library is not glibc or it is turned off.

    ``TURNOUT_MALLOC_TUNING=0`` keeps glibc's defaults (to compare, or when
    memory matters more than large-body throughput).
    """
    if os.environ.get("TURNOUT_MALLOC_TUNING", "1") == "0":
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    done = all(
        mallopt(param, value) == 1
        for param, value in (
            (M_MMAP_THRESHOLD, MMAP_THRESHOLD),
            (M_TRIM_THRESHOLD, TRIM_THRESHOLD),
            (M_TOP_PAD, TOP_PAD),
        )
    )
    log.debug("malloc tuning %s", "applied" if done else "refused by the C library")
    return done
