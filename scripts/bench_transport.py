"""Round trips per second of the node-to-node RPC transport vs. httpx against our own HTTP shell, same run; and the
cost of the per-frame MAC (RPC with it, as shipped, vs. a second server and client with it switched off).

A child process serves both (an echo method on serve_rpc, a trivial handler on serve_http) so client and server
get a core each; the parent measures sequential calls and 32 in flight, 100-byte bodies (and 64 KiB for the MAC
rows). A program, not a test: it prints figures with units and the machine, and never fails on a timing.
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
from node.transport.messages import FRAME_BYTES_MAX, FrameDecoder  # noqa: E402
from node.transport.server import route, serve_rpc  # noqa: E402
from node.transport.wire import RECEIVE_BYTES, Wire  # noqa: E402

SECRET = "bench-secret"
BODY = b"x" * 100
BIG = b"x" * 65536


def _mac_off() -> None:
    """This process's connections get the full frame limit after the handshake but no MAC (the baseline)."""

    def secure(self: Wire, session: object, frame_bytes_max: int = FRAME_BYTES_MAX) -> None:
        self._frames = FrameDecoder(frame_bytes_max, self._frames)
        self._read_bytes = RECEIVE_BYTES

    Wire.secure = secure  # type: ignore[method-assign, assignment]
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


mac_rows: list[tuple[str, int, float, float, int]] = []


async def _bench_no_mac(rpc_port: int, seconds: float) -> None:
    _mac_off()
    async with open_peer_pool(SECRET, "client") as pool:
        addr = ("127.0.0.1", rpc_port)
        for name, body in (("RPC without MAC, 100 B", BODY), ("RPC without MAC, 64 KiB", BIG)):

            async def call(body: bytes = body) -> bytes:
                return await pool.call(addr, "echo", body, CALL_TIMEOUT_S)

            mac_rows.append((name, 32, *await _rate(call, 32, seconds)))


async def _bench(rpc_port: int, http_port: int, seconds: float) -> None:
    import httpx  # only the baseline needs it

    rows: list[tuple[str, int, float, float, int]] = []
    async with open_peer_pool(SECRET, "client") as pool:
        addr = ("127.0.0.1", rpc_port)

        async def rpc_call() -> bytes:
            out = await pool.call(addr, "echo", BODY, CALL_TIMEOUT_S)
            assert out == BODY
            return out

        async def rpc_big() -> bytes:
            out = await pool.call(addr, "echo", BIG, CALL_TIMEOUT_S)
            assert out == BIG
            return out

        for conc in (1, 32):
            rows.append(("msgpack RPC (1 connection)", conc, *await _rate(rpc_call, conc, seconds)))
        mac_rows.append(("RPC with MAC, 100 B", 32, *await _rate(rpc_call, 32, seconds)))
        mac_rows.append(("RPC with MAC, 64 KiB", 32, *await _rate(rpc_big, 32, seconds)))
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
    ap.add_argument("--no-mac", action="store_true", help=argparse.SUPPRESS)  # the MAC baseline child's
    args = ap.parse_args()
    if args.no_mac:
        _mac_off()
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
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--no-mac"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert child.stdout is not None
        ports = json.loads(child.stdout.readline())
        trio.run(_bench_no_mac, ports["rpc"], args.seconds)  # last: it switches this process's MAC off
    finally:
        child.terminate()
        child.wait(timeout=10)
    print(f"\n{'frame MAC (32 in flight)':<27} {'round trips/s':>14} {'client CPU':>14}")
    for name, _conc, rate, cpu, n in mac_rows:
        print(f"{name:<27} {rate:>14,.0f} {cpu * 1e6:>8,.0f} µs/call  ({n} calls)")
    for size in ("100 B", "64 KiB"):
        on = next(r for r in mac_rows if r[0] == f"RPC with MAC, {size}")
        off = next(r for r in mac_rows if r[0] == f"RPC without MAC, {size}")
        print(f"MAC cost at {size}: {100 * (1 - on[2] / off[2]):.1f} % fewer round trips/s, "
              f"{(on[3] - off[3]) * 1e6:+.1f} µs client CPU per call")


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
