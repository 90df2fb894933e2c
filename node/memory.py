"""Allocator settings for a node process (glibc malloc), set once at start by `murmur node`.

A node holds its long-lived state in a few hundred large buffers (columns, posting arrays, the text heap) and
churns through short-lived large ones (8 MiB bulk bodies, decoded batches, RPC frames). With glibc's defaults the
mmap threshold grows each time a large mmapped block is freed (up to 32 MiB), so later large buffers come from
the heap, where freed ones leave holes that RSS keeps; worker threads (WAL writes) get arenas of their own.
Fixing the thresholds returns large freed buffers to the OS at once, and two arenas are enough for a loop and its
few workers. Measured with scripts/bench_scale.py --limit 600000 (3 nodes, the IRA corpus): RSS after the load
411-415 MB against 452-459 MB with the defaults, at the same load rate within noise. These are the documented
`mallopt` knobs (the same as the MALLOC_*_ environment variables); elsewhere than glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1  # <malloc.h>
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's initial default, kept fixed instead of growing
TRIM_THRESHOLD_BYTES = 128 * 1024
ARENAS_MAX = 2


def tune_malloc() -> bool:
    """Apply the settings above; False when this is not glibc (nothing changed)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
    ok = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1 and ok
    ok = mallopt(M_ARENA_MAX, ARENAS_MAX) == 1 and ok
    return ok
