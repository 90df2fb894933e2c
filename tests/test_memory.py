"""node/memory.py: the allocator settings take on this machine's glibc, in a process of their own (they are
process-wide), and large buffers freed afterwards go back to the OS instead of staying resident."""

from __future__ import annotations

import subprocess
import sys

CHILD = r"""
import gc, sys
from node.memory import tune_malloc

def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024

if sys.argv[1] == "tuned":
    assert tune_malloc() is True
gc.collect()
base = rss()
# Large buffers freed in turn, as a node's bulk bodies and batches are. With glibc's defaults, freeing the first
# raises the mmap threshold, the later ones come from the heap, and their pages stay resident once freed.
for size in (16, 8, 8, 4):
    b = bytearray(size * 1024 * 1024)
    b[::4096] = b"x" * len(b[::4096])  # touch every page
    del b
gc.collect()
print(rss() - base)
"""


def leftover(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True, timeout=60)
    return int(out.stdout)


def test_tune_malloc_returns_large_freed_buffers_to_the_os() -> None:
    assert leftover("defaults") > 6 * 1024 * 1024, "the defaults no longer keep freed buffers: the test says nothing"
    assert leftover("tuned") < 2 * 1024 * 1024
