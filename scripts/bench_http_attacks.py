"""The HTTP "done when" figures of issue 12, measured against a real node process with its default limits:
(1) with 1,100 silent sockets open, how long /health takes to answer; (2) while one client sends 400,000 one-byte
chunks, the longest /health round trip. Each beside a baseline taken in the same run with no attack.
A program, not a test: it prints figures with units and the machine, and never fails on a timing.

    .venv/bin/python scripts/bench_http_attacks.py
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
SILENT = 1100
CHUNKS = 400_000
ATTACKER = "127.0.0.2"  # another loopback address: the per-address cap applies to it, not to the prober


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_node(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    http = free_port()
    (root / "cluster.toml").write_text(
        '[cluster]\nreplication_factor = 1\nwrite_quorum = 1\nread_quorum = 1\nsecret = "bench-secret"\n'
        f'[[nodes]]\nname = "n1"\nhost = "127.0.0.1"\nhttp_port = {http}\ngossip_port = {free_port()}\n'
    )
    log = open(root / "n1.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "node.cli.main", "node", "--config", str(root / "cluster.toml"), "--name", "n1"],
        cwd=REPO, stdout=log, stderr=log,
    )
    url = f"http://127.0.0.1:{http}"
    for _ in range(600):
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("the node did not start")


def health_ms(url: str, source: str = "127.0.0.1", timeout_s: float = 30.0) -> float:
    """One /health on a new connection from `source`, in milliseconds (inf if it failed)."""
    t0 = time.perf_counter()
    try:
        with httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=timeout_s) as c:
            c.get(url + "/health").raise_for_status()
    except httpx.HTTPError:
        return float("inf")
    return (time.perf_counter() - t0) * 1000


def probe(url: str, stop: threading.Event, out: list[float], every_s: float = 0.01) -> None:
    with httpx.Client(timeout=30) as c:  # keep-alive: what a load balancer's health check looks like
        while not stop.is_set():
            t0 = time.perf_counter()
            c.get(url + "/health")
            out.append((time.perf_counter() - t0) * 1000)
            time.sleep(every_s)


def stats(xs: list[float]) -> str:
    xs = sorted(xs)
    return f"n={len(xs)}, median {xs[len(xs) // 2]:.1f} ms, p99 {xs[int(len(xs) * 0.99)]:.1f} ms, max {xs[-1]:.1f} ms"


def main() -> None:
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; "
          f"Python {platform.python_version()}; one node, default [http] limits", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_node(Path(tmp))
        host, port = "127.0.0.1", int(url.rsplit(":", 1)[1])
        try:
            base = [health_ms(url) for _ in range(30)]
            print(f"baseline /health on a new connection: {stats(base)}")

            socks = []
            for _ in range(SILENT):
                s = socket.socket()
                s.bind((ATTACKER, 0))
                s.connect((host, port))
                socks.append(s)
            time.sleep(0.5)
            other = [health_ms(url) for _ in range(10)]
            same = [health_ms(url, ATTACKER) for _ in range(10)]
            print(f"{SILENT} silent sockets open: /health from another address: {stats(other)}")
            print(f"{SILENT} silent sockets open: /health from the attacker's address: {stats(same)}")
            for s in socks:
                s.close()

            quiet: list[float] = []
            stop = threading.Event()
            th = threading.Thread(target=probe, args=(url, stop, quiet))
            th.start()
            time.sleep(2.0)
            stop.set()
            th.join()
            print(f"baseline /health every 10 ms, keep-alive, 2 s: {stats(quiet)}")

            during: list[float] = []
            stop = threading.Event()
            th = threading.Thread(target=probe, args=(url, stop, during))
            th.start()
            body = b"1\r\na\r\n" * CHUNKS + b"0\r\n\r\n"
            t0 = time.perf_counter()
            with socket.create_connection((host, port)) as s:
                s.sendall(b"POST /tweets HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n" + body)
                answer = s.recv(200).split(b"\r\n", 1)[0].decode()
            attack_s = time.perf_counter() - t0
            time.sleep(0.2)
            stop.set()
            th.join()
            print(f"{CHUNKS:,} one-byte chunks ({len(body) / 1e6:.1f} MB on the wire) answered {answer!r} "
                  f"after {attack_s:.2f} s; /health meanwhile: {stats(during)}")
        finally:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    main()
