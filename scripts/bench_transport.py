"""Round trips per second of the node-to-node RPC transport vs. httpx against our own HTTP shell, same run.

A child process serves both (an echo method on serve_rpc, a trivial handler on serve_http) so client and server
get a core each; the parent measures sequential calls and 32 in flight, 100-byte bodies. A program, not a test:
it prints figures with units and the machine, and never fails on a timing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import structlog
import trio

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a plain script: make the checkout's `node` importable

from node.config import HttpConfig  # noqa: E402
from node.http.server import Request, Response, serve_http  # noqa: E402
from node.transport.client import open_peer_pool  # noqa: E402
from node.transport.server import route, serve_rpc  # noqa: E402

SECRET = "bench-secret"
BODY = b"x" * 100
CALL_TIMEOUT_S = 10.0


async def _serve() -> None:
    async def echo(body: bytes, peer: str) -> bytes:
        return body

    async def http_echo(req: Request) -> Response:
        return Response(200, req.body, "application/octet-stream")

    async with trio.open_nursery() as nursery:
        rpc_port = await nursery.start(partial(serve_rpc, route({"echo": echo}), "127.0.0.1", 0, SECRET, "server"))
        http_port = await nursery.start(partial(serve_http, http_echo, "127.0.0.1", 0, HttpConfig()))
        print(json.dumps({"rpc": rpc_port, "http": http_port}), flush=True)


async def _rate(
    call: Callable[[], Awaitable[object]], concurrency: int, seconds: float
) -> tuple[float, float, int]:
    """(calls per second, client CPU seconds per call, calls) of `concurrency` tasks calling in a loop for about
    `seconds`, after a short warm-up. CPU per call is steadier than the rate on a busy machine."""
    for _ in range(200):
        await call()
    done = 0
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            await call()
            done += 1

    t0, c0 = time.perf_counter(), time.process_time()
    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(worker)
    return done / (time.perf_counter() - t0), (time.process_time() - c0) / done, done


async def _bench(rpc_port: int, http_port: int, seconds: float) -> None:
    import httpx  # only the baseline needs it

    rows: list[tuple[str, int, float, float, int]] = []
    async with open_peer_pool(SECRET, "client") as pool:
        addr = ("127.0.0.1", rpc_port)

        async def rpc_call() -> bytes:
            out = await pool.call(addr, "echo", BODY, CALL_TIMEOUT_S)
            assert out == BODY
            return out

        for conc in (1, 32):
            rows.append(("msgpack RPC (1 connection)", conc, *await _rate(rpc_call, conc, seconds)))
    url = f"http://127.0.0.1:{http_port}/echo"
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    async with httpx.AsyncClient(limits=limits, timeout=CALL_TIMEOUT_S) as client:

        async def http_call() -> bytes:
            r = await client.post(url, content=BODY)
            assert r.status_code == 200 and r.content == BODY
            return r.content

        for conc in (1, 32):
            rows.append(("httpx -> node.http.server", conc, *await _rate(http_call, conc, seconds)))
    base = {conc: rate for name, conc, rate, _, _ in rows if name.startswith("httpx")}
    print(f"{'transport':<27} {'in flight':>9} {'round trips/s':>14} {'mean latency':>13} {'client CPU':>14} {'vs httpx':>9}")
    for name, conc, rate, cpu, n in rows:
        print(
            f"{name:<27} {conc:>9} {rate:>14,.0f} {conc / rate * 1e6:>10,.0f} µs {cpu * 1e6:>8,.0f} µs/call"
            f" {rate / base[conc]:>8.1f}x  ({n} calls)"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=3.0, help="measuring time per row, seconds")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # the child's role
    args = ap.parse_args()
    if args.serve:
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))  # stdout carries the ports
        trio.run(_serve)
        return
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, {_cpu_model()}, load {os.getloadavg()[0]:.2f}; "
        f"Python {platform.python_version()}, trio {trio.__version__}; body {len(BODY)} bytes; "
        "server in a child process, loopback TCP",
        flush=True,
    )
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert child.stdout is not None
        ports = json.loads(child.stdout.readline())
        trio.run(_bench, ports["rpc"], ports["http"], args.seconds)
    finally:
        child.terminate()
        child.wait(timeout=10)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    main()
