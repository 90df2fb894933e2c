"""Fuzz the node longer than `make test` does: the HTTP API from its own /openapi.json (schemathesis, against a real
node process) and the RPC decoders and a live RPC server (Hypothesis). It runs the two fuzz tests with
MURMUR_FUZZ_EXAMPLES raised and prints what ran: cases, seconds, failures. A program, not a test; bounded by
--examples and by --timeout (seconds per part).

    .venv/bin/python scripts/fuzz_http.py --examples 2000
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PARTS = {
    "HTTP (schemathesis, real node)": "tests/http/test_fuzz_http.py",
    "RPC decoders and live server (Hypothesis)": "tests/transport/test_transport_fuzz.py",
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=1000, help="examples per HTTP operation (RPC: scaled alike)")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per part at most")
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; "
          f"Python {platform.python_version()}; --examples {args.examples}", flush=True)
    env = {**os.environ, "MURMUR_FUZZ_EXAMPLES": str(args.examples)}
    failed = 0
    for name, path in PARTS.items():
        t0 = time.monotonic()
        cmd = [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", f"--timeout={int(args.timeout)}", path]
        p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=args.timeout + 60)
        seconds = time.monotonic() - t0
        out = p.stdout + p.stderr
        cases = re.search(r"fuzz_http: (\d+) cases over (\d+) operations", out)
        summary = [ln for ln in out.splitlines() if re.search(r"\d+ (passed|failed)", ln)]
        what = f"{cases.group(1)} cases over {cases.group(2)} operations, " if cases else ""
        print(f"{name}: {what}{summary[-1] if summary else 'no summary'}; {seconds:.1f} s wall")
        if p.returncode != 0:
            failed += 1
            print(out[-4000:])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
