"""Snapshots written by a child process, as Redis's BGSAVE does: fork, and the child writes the copy-on-write
image of the state as it was at the fork while the parent goes on serving; the parent only waits for it.

The child never returns into the event loop: it lowers its priority, writes the snapshot (node/storage/snapshot.py:
temp file, fsync, read back, rename), reports through a pipe and `os._exit`s. It dies with its parent
(PR_SET_PDEATHSIG), so a node killed mid-snapshot leaves no writer behind holding its data directory; what it
leaves is a `.tmp` that recovery deletes. The parent polls the child every POLL_S without blocking the loop.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import signal
from collections.abc import Callable, Sequence
from pathlib import Path

import trio

from node.storage.parts import Buffer, crc_of, table_bytes
from node.storage.snapshot import write_snapshot_pieces

POLL_S = 0.05  # how often the parent looks whether the child has finished
CHILD_NICE = 10  # the child yields the CPU to the serving parent
REPORT_BYTES_MAX = 4096
_PR_SET_PDEATHSIG = 1


class SnapshotFailed(OSError):
    pass


def parts_pieces(parts: Sequence[tuple[str, Buffer]]) -> list[Buffer]:
    """The pieces of a parts container (node/storage/parts.py) in file order, without joining them."""
    crcs = [crc_of(d) for _, d in parts]
    return [table_bytes(parts, crcs), *(d for _, d in parts if len(d))]


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _child(directory: Path, lsn: int, make_parts: Callable[[], Sequence[tuple[str, Buffer]]], report: int) -> None:
    code = 1
    try:
        _die_with_parent()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        gc.disable()  # the collector would touch every object: copy-on-write of the whole heap for nothing
        with contextlib.suppress(OSError):
            os.nice(CHILD_NICE)
        written = write_snapshot_pieces(directory, lsn, parts_pieces(make_parts()))
        os.write(report, f"ok {written}".encode())
        code = 0
    except BaseException as e:  # anything: the parent must hear of it, and the child must not live on
        with contextlib.suppress(BaseException):
            os.write(report, f"error {type(e).__name__}: {e}".encode()[:REPORT_BYTES_MAX])
    finally:
        os._exit(code)


async def snapshot_in_child(
    directory: Path, lsn: int, make_parts: Callable[[], Sequence[tuple[str, Buffer]]]
) -> int:
    """Write the snapshot at `lsn` of what `make_parts()` returns in a forked child. `make_parts` runs in the
    child, on the state as it was when this was called. -> bytes written. Raises SnapshotFailed (the child's
    reason) when it did not write one; nothing older was touched then."""
    r, w = os.pipe()
    # What exists now lives on (the node's state): out of the collector's reach from here, so that neither the
    # child's writing nor the parent's next full passes walk it (the gc docs' advice before a fork). Measured
    # (bench_scale, whole corpus, MURMUR_SLOW_STEP_MS=50): 255 full passes over 50 ms during the load, ~100 ms
    # each, max 236 ms, the longest stalls a search met.
    gc.freeze()
    try:
        pid = os.fork()
    except BaseException:
        os.close(r)
        os.close(w)
        raise
    if pid == 0:  # the child
        os.close(r)
        _child(directory, lsn, make_parts, w)
    os.close(w)
    try:
        status = 0
        try:
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)  # noqa: ASYNC222 (WNOHANG: never blocks)
                if done:
                    break
                await trio.sleep(POLL_S)
        except BaseException:
            # cancelled (the node stops): the child must not outlive this call
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)  # noqa: ASYNC222 (SIGKILLed: returns at once)
            raise
        report = os.read(r, REPORT_BYTES_MAX).decode(errors="replace")
    finally:
        os.close(r)
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 and report.startswith("ok "):
        return int(report.split()[1])
    why = report or (f"killed by signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"status {status}")
    raise SnapshotFailed(f"the snapshot process failed: {why}")
