"""Benchmark (a program, not a test): GET /health requests per second through the real HTTP shell and API.

Starts the server in a child process, then drives it from this process with N keep-alive connections for D
seconds. Baseline in the same run: the same shell with a bare handler (a constant response), so the API's own
cost shows. Prints req/s and the machine. Usage: .venv/bin/python scripts/bench_http.py [N] [D]
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from functools import partial

import trio

REQUEST = b"GET /health HTTP/1.1\r\nhost: bench\r\n\r\n"


def serve_forever(bare: bool) -> None:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "http"))
    from httpkit import FakeCoordinator

    from node.config import HttpConfig
    from node.http.api import make_handler
    from node.http.server import Request, Response, serve_http
    from node.metrics import HttpMetrics

    async def constant(req: Request) -> Response:
        return Response(200, b'{"status":"ok"}')

    async def main() -> None:
        cfg = HttpConfig()
        handler = constant if bare else make_handler(FakeCoordinator(), HttpMetrics(), cfg, "bench")
        async with trio.open_nursery() as n:
            port = await n.start(partial(serve_http, handler, "127.0.0.1", 0, cfg))
            print(port, flush=True)

    trio.run(main)


async def one_client(port: int, until: float, counts: list[int]) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    buf = b""
    n = 0
    async with stream:
        while trio.current_time() < until:
            await stream.send_all(REQUEST)
            while True:  # read one whole response: head, then content-length bytes
                end = buf.find(b"\r\n\r\n")
                if end >= 0:
                    head = buf[:end].lower()
                    i = head.find(b"content-length: ") + 16
                    length = int(head[i : head.find(b"\r\n", i) if head.find(b"\r\n", i) > 0 else None])
                    if len(buf) >= end + 4 + length:
                        assert buf.startswith(b"HTTP/1.1 200 "), buf[:100]
                        buf = buf[end + 4 + length :]
                        break
                buf += await stream.receive_some(65536)
            n += 1
    counts.append(n)


async def load(port: int, conns: int, seconds: float) -> float:
    counts: list[int] = []
    start = trio.current_time()
    async with trio.open_nursery() as n:
        for _ in range(conns):
            n.start_soon(one_client, port, start + seconds, counts)
    return sum(counts) / (trio.current_time() - start)


def main() -> None:
    if sys.argv[1:2] == ["--serve"]:
        serve_forever(sys.argv[2] == "bare")
        return
    conns = int(sys.argv[1]) if len(sys.argv) > 1 else 32
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 5.0
    print(
        f"{platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, "
        f"Python {platform.python_version()}; {conns} keep-alive connections, {seconds:.0f} s each"
    )
    for mode in ("bare", "api"):
        run_one(mode, conns, seconds)


def run_one(mode: str, conns: int, seconds: float) -> None:
    child = subprocess.Popen([sys.executable, __file__, "--serve", mode], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        while not line.strip().isdigit():  # skip the server's log lines
            line = child.stdout.readline()
        port = int(line)
        time.sleep(0.2)
        rate = trio.run(load, port, conns, seconds)
        what = "bare handler (baseline)" if mode == "bare" else "GET /health through the API"
        print(f"{what}: {rate:,.0f} req/s")
    finally:
        child.terminate()
        child.wait(10)


if __name__ == "__main__":
    main()
