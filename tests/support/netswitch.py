"""A userspace Ethernet switch between TAP interfaces, with per-link delay, loss and cuts: what `tc netem` on veth
links would do, for kernels without sch_netem (this machine's has neither netem nor prio). Each TAP is one port;
tests/support/netns.py moves all but the host's into network namespaces of their own, so every node has a real
kernel IP stack, its own address and real TCP/UDP between them.

    python -m tests.support.netswitch --control SOCK --seed 7 NAME=TAP [NAME=TAP ...]

It creates the TAP devices itself (non-persistent: they vanish with this process, so a crash leaves nothing
behind), prints "ready" once they exist, and serves JSON-line commands on the UNIX socket SOCK:
    {"op": "link", "a": "n1"|"*", "b": "n2"|"*", "delay_ms": 20, "loss": 0.01}   both directions of each link
    {"op": "cut", "a": "n1", "b": "n2"|"*"}    drop every frame between them (both ways) until "heal"
    {"op": "heal"}                             remove every cut (delay and loss stay)
    {"op": "stats"}                            frames forwarded, delayed, lost, cut
Loss is drawn from a Random seeded by --seed. Frames keep their order on each link (one delay per link). Never
touches an interface it did not create.
"""

from __future__ import annotations

import argparse
import collections
import fcntl
import json
import os
import random
import select
import socket
import struct
import sys
import time
from typing import Any

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
FRAME_MAX = 65_536
QUEUE_MAX = 20_000  # frames waiting on one link at most (beyond: dropped, like a full netem queue)


def open_tap(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    return fd


class Switch:
    def __init__(self, ports: dict[str, int], seed: int) -> None:
        self.ports = ports  # name -> tap fd
        self.names = {fd: n for n, fd in ports.items()}
        self.rng = random.Random(seed)
        self.macs: dict[bytes, str] = {}  # learnt: source MAC -> port name
        self.delay_s: dict[tuple[str, str], float] = {}
        self.loss: dict[tuple[str, str], float] = {}
        self.cuts: set[tuple[str, str]] = set()
        self.queues: dict[tuple[str, str], collections.deque[tuple[float, bytes]]] = {}
        self.stats = collections.Counter[str]()

    def links(self, a: str, b: str) -> list[tuple[str, str]]:
        left = list(self.ports) if a == "*" else [a]
        right = list(self.ports) if b == "*" else [b]
        out = []
        for x in left:
            for y in right:
                if x != y:
                    out += [(x, y), (y, x)]
        return out

    def command(self, cmd: dict[str, Any]) -> dict[str, Any]:
        op = cmd.get("op")
        if op == "link":
            for ln in self.links(cmd["a"], cmd["b"]):
                self.delay_s[ln] = float(cmd.get("delay_ms", 0.0)) / 1000.0
                self.loss[ln] = float(cmd.get("loss", 0.0))
            return {"ok": True}
        if op == "cut":
            self.cuts.update(self.links(cmd["a"], cmd["b"]))
            return {"ok": True, "cuts": len(self.cuts)}
        if op == "heal":
            self.cuts.clear()
            return {"ok": True}
        if op == "stats":
            return {"ok": True, "stats": dict(self.stats), "queued": sum(len(q) for q in self.queues.values())}
        return {"ok": False, "error": f"unknown op {op!r}"}

    def forward(self, src: str, frame: bytes, now: float) -> None:
        if len(frame) < 14:
            return
        dst_mac, src_mac = frame[0:6], frame[6:12]
        if not src_mac[0] & 1:
            self.macs[src_mac] = src
        dst = self.macs.get(dst_mac) if not dst_mac[0] & 1 else None
        targets = [dst] if dst is not None else [n for n in self.ports if n != src]
        for t in targets:
            if t == src:
                continue
            ln = (src, t)
            if ln in self.cuts:
                self.stats["cut"] += 1
                continue
            if self.rng.random() < self.loss.get(ln, 0.0):
                self.stats["lost"] += 1
                continue
            delay = self.delay_s.get(ln, 0.0)
            q = self.queues.setdefault(ln, collections.deque())
            if delay <= 0.0 and not q:
                self._send(t, frame)
            elif len(q) < QUEUE_MAX:
                q.append((now + delay, frame))
                self.stats["delayed"] += 1
            else:
                self.stats["overflow"] += 1

    def _send(self, port: str, frame: bytes) -> None:
        try:
            os.write(self.ports[port], frame)
            self.stats["forwarded"] += 1
        except (BlockingIOError, OSError):  # the interface is down or its queue full: a lost frame
            self.stats["write_failed"] += 1

    def release(self, now: float) -> float | None:
        """Send every frame that is due; -> seconds until the next one (None: nothing waits)."""
        nxt: float | None = None
        for (_src, dst), q in self.queues.items():
            while q and q[0][0] <= now:
                self._send(dst, q.popleft()[1])
            if q:
                wait = q[0][0] - now
                nxt = wait if nxt is None else min(nxt, wait)
        return nxt


def serve(sw: Switch, control: socket.socket) -> None:
    """Forward until the process that started this one is gone (a SIGKILLed test must not leave a switch behind)
    or an interface disappears."""
    clients: dict[socket.socket, bytes] = {}
    parent = os.getppid()
    while os.getppid() == parent:
        now = time.monotonic()
        wait = sw.release(now)
        readable: list[Any] = [*sw.names, control, *clients]
        r, _w, _x = select.select(readable, [], [], 1.0 if wait is None else max(0.0, wait))
        now = time.monotonic()
        for x in r:
            if x is control:
                conn, _ = control.accept()
                clients[conn] = b""
            elif isinstance(x, socket.socket):
                data = x.recv(65536)
                if not data:
                    del clients[x]
                    x.close()
                    continue
                buf = clients[x] + data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    try:
                        resp = sw.command(json.loads(line))
                    except (ValueError, KeyError, TypeError) as e:
                        resp = {"ok": False, "error": repr(e)}
                    x.sendall(json.dumps(resp).encode() + b"\n")
                clients[x] = buf
            else:
                for _ in range(64):  # drain a burst, but let the other ports and the timers run
                    try:
                        frame = os.read(x, FRAME_MAX)
                    except BlockingIOError:
                        break
                    except OSError:  # the interface went away (its lab was removed): stop
                        return
                    sw.forward(sw.names[x], frame, now)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--control", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("ports", nargs="+", help="NAME=TAPDEV")
    args = p.parse_args()
    ports = {}
    for spec in args.ports:
        name, _, dev = spec.partition("=")
        ports[name] = open_tap(dev)
    control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    control.bind(args.control)
    control.listen(8)
    print("ready", flush=True)
    try:
        serve(Switch(ports, args.seed), control)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
