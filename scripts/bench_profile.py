"""py-spy around a phase of a benchmark: start one `py-spy record` per node pid, stop them at the phase's end,
and summarise where the samples were (the functions with the most samples of their own).

Used by scripts/bench_cluster.py --profile. Installs py-spy into this venv with pip when it is missing (saying
so). Signals only the py-spy processes it started.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

RATE_HZ = 100  # samples per second per node: enough for a few seconds' profile, cheap on 2 cores
STOP_TIMEOUT_S = 30.0


def ensure_pyspy() -> str | None:
    """py-spy's path (next to this Python first); pip-installs it into this environment when missing."""
    near = Path(sys.executable).parent / "py-spy"
    if near.exists():
        return str(near)
    exe = shutil.which("py-spy")
    if exe is not None:
        return exe
    print(f"py-spy is not installed: {sys.executable} -m pip install py-spy ...", flush=True)
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "py-spy"], capture_output=True, check=False)
    if near.exists():
        return str(near)
    print(f"  could not install py-spy: {r.stderr.decode(errors='replace').strip()[-300:]}")
    return shutil.which("py-spy")


class Profile:
    """`py-spy record --format raw` (collapsed stacks: speedscope.app and flamegraph.pl read them) on each pid."""

    def __init__(self, exe: str, out_dir: Path, phase: str, pids: dict[str, int]) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        self.files = {name: out_dir / f"{phase}-{name}.txt" for name in pids}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        for name, pid in pids.items():
            self.procs[name] = subprocess.Popen(
                [exe, "record", "--pid", str(pid), "--rate", str(RATE_HZ), "--format", "raw", "--nonblocking",
                 "--output", str(self.files[name])],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )

    def stop(self) -> dict[str, Path]:
        """SIGINT makes py-spy write its file and exit; -> the files that were written."""
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        out = {}
        for name, p in self.procs.items():
            try:
                p.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            if self.files[name].exists() and self.files[name].stat().st_size > 0:
                out[name] = self.files[name]
            else:
                err = p.stderr.read().decode(errors="replace").strip() if p.stderr else ""
                print(f"  py-spy wrote nothing for {name}: {err[-300:]}")
        return out


def _frame(frame: str) -> tuple[str, str]:
    """'func (path/file.py:12)' -> ('func', 'path/file.py')."""
    func, _, where = frame.partition(" (")
    return func, where.rsplit(":", 1)[0] if where else ""


def summarise(path: Path, n: int = 6) -> tuple[int, list[tuple[str, float]], list[tuple[str, float]]]:
    """(samples, the `n` leaf functions with the most samples, the `n` innermost Murmur functions (node/...)
    with the most samples, library frames under them folded in), shares of all samples; line numbers merged."""
    leaf: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    total = 0
    for ln in path.read_text(errors="replace").splitlines():
        stack, _, count = ln.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        c = int(count)
        frames = [_frame(f) for f in stack.split(";")]
        func, file = frames[-1]
        leaf[f"{func} ({os.path.basename(file)})"] += c
        inner = next((f for f in reversed(frames) if f[1].startswith("node/")), None)
        ours[f"{inner[0]} ({inner[1]})" if inner else "(outside node/)"] += c
        total += c
    if not total:
        return 0, [], []
    return total, [(k, v / total) for k, v in leaf.most_common(n)], [(k, v / total) for k, v in ours.most_common(n)]


def report(files: dict[str, Path], what: str) -> None:
    for name, path in files.items():
        total, leaf, ours = summarise(path)
        print(f"  profile {what} {name}: {path} ({total:,} samples)")
        for (f1, s1), (f2, s2) in zip(leaf, ours, strict=False):
            print(f"      {s1:6.1%}  {f1[:60]:60}  {s2:6.1%}  {f2[:60]}")
        if leaf:
            print(f"      {'(leaf functions: own samples)':68}  (innermost Murmur function, libraries folded in)")
