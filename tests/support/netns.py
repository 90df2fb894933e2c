"""A cluster across real interfaces: every node in a network namespace of its own, with its own private address
on a TAP interface, all joined by the userspace switch of tests/support/netswitch.py (per-link delay, loss and
cuts, the part of `tc netem` this kernel lacks), and the test process reaching them from the root namespace
through one more TAP. Needs root and /dev/net/tun.

Everything it creates carries the prefix `murmurlab<pid>` (namespaces `murmurlab<pid>-<node>`, TAPs `mm<pid>-<k>`,
a 10.<x>.<y>.0/24 subnet that no route of this machine uses), and `Lab.close()` removes it even after a failure
(use it as a context manager or a fixture finalizer). `sweep_stale()` removes what a SIGKILLed run left behind: only
names with the prefix whose pid no longer runs. It never touches an interface, route or namespace it did not make,
and it creates no qdisc at all.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PREFIX = "murmurlab"
TAP_PREFIX = "mm"
ROOT = Path(__file__).resolve().parents[2]
HOST = "host"  # the switch port of the test process (root namespace)
CMD_TIMEOUT_S = 10.0
START_TIMEOUT_S = 10.0
MTU = 9000  # both ends are ours: fewer frames for the switch to carry


class LabError(RuntimeError):
    pass


def why_unavailable() -> str | None:
    """None when a lab can be built here, else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is not installed"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun is missing"
    return None


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=CMD_TIMEOUT_S)
    if check and r.returncode != 0:
        raise LabError(f"`{' '.join(cmd)}` failed: {r.stderr.strip()}")
    return r


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale() -> list[str]:
    """Delete namespaces and links of labs whose process is gone (a SIGKILLed run). -> what was removed."""
    removed = []
    out = _run("ip", "netns", "list", check=False).stdout
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        tag = name[len(PREFIX) :].split("-")[0] if name.startswith(PREFIX) else ""
        if tag.isdigit() and not _alive(int(tag)):
            _run("ip", "netns", "del", name, check=False)
            removed.append(name)
    links = _run("ip", "-o", "link", "show", check=False).stdout
    for line in links.splitlines():
        dev = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
        tag = dev[len(TAP_PREFIX) :].split("-")[0] if dev.startswith(TAP_PREFIX) else ""
        if tag.isdigit() and not _alive(int(tag)):
            _run("ip", "link", "del", dev, check=False)
            removed.append(dev)
    return removed


def _free_subnet() -> ipaddress.IPv4Network:
    used = [ipaddress.ip_network(w, strict=False) for w in
            _run("ip", "-4", "-o", "route", "show", "table", "all", check=False).stdout.split()
            if "/" in w and w[0].isdigit()]
    used += [ipaddress.ip_interface(w).network for w in _run("ip", "-4", "-o", "addr", check=False).stdout.split()
             if "/" in w and w[0].isdigit()]
    pid = os.getpid()
    for k in range(256):
        net = ipaddress.IPv4Network(f"10.{200 + (pid + k) % 50}.{(pid // 50 + k) % 256}.0/24")
        if not any(net.overlaps(u) for u in used):
            return net
    raise LabError("no free 10.200-249.x.0/24 subnet")


class Lab:
    """`with Lab(["n1", "n2", "n3"], seed=7) as lab:` then lab.addr("n1"), lab.exec_prefix("n1"),
    lab.link("*", "*", delay_ms=20, loss=0.01), lab.cut("n3", "*"), lab.heal()."""

    def __init__(self, names: list[str], seed: int = 0) -> None:
        why = why_unavailable()
        if why is not None:
            raise LabError(why)
        self.names = list(names)
        self.seed = seed
        self.tag = f"{PREFIX}{os.getpid()}"
        self.ns = {n: f"{self.tag}-{n}" for n in names}
        self.taps = {HOST: f"{TAP_PREFIX}{os.getpid()}-0"} | {
            n: f"{TAP_PREFIX}{os.getpid()}-{k + 1}" for k, n in enumerate(names)
        }
        assert all(len(t) <= 15 for t in self.taps.values()), self.taps
        self.subnet = _free_subnet()
        hosts = list(self.subnet.hosts())
        self.host_addr = str(hosts[0])
        self.addrs = {n: str(hosts[k + 1]) for k, n in enumerate(names)}
        self._dir = Path(tempfile.mkdtemp(prefix=f"{self.tag}-"))
        self._control = str(self._dir / "switch.sock")
        self._switch: subprocess.Popen[str] | None = None
        self._made_ns: list[str] = []
        self.switch_error = ""

    # ------------------------------------------------------------ life

    def __enter__(self) -> Lab:
        try:
            self.open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        sweep_stale()
        for n in self.names:
            _run("ip", "netns", "add", self.ns[n])
            self._made_ns.append(self.ns[n])
        specs = [f"{p}={t}" for p, t in self.taps.items()]
        self._switch = subprocess.Popen(
            [sys.executable, "-m", "tests.support.netswitch", "--control", self._control, "--seed", str(self.seed),
             *specs],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True,
        )
        assert self._switch.stdout is not None
        line = self._switch.stdout.readline()  # "ready" once the TAPs exist
        if line.strip() != "ready":
            raise LabError(f"the switch did not start: {line!r} {self._switch.stderr.read() if self._switch.stderr else ''}")
        prefixlen = str(self.subnet.prefixlen)
        host_tap = self.taps[HOST]
        _disable_ipv6(None, host_tap)
        _run("ip", "link", "set", host_tap, "mtu", str(MTU))
        _run("ip", "addr", "add", f"{self.host_addr}/{prefixlen}", "dev", host_tap)
        _run("ip", "link", "set", host_tap, "up")
        for n in self.names:
            ns, tap = self.ns[n], self.taps[n]
            _run("ip", "link", "set", tap, "netns", ns)
            _disable_ipv6(ns, tap)
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            _run("ip", "-n", ns, "link", "set", tap, "mtu", str(MTU))
            _run("ip", "-n", ns, "addr", "add", f"{self.addrs[n]}/{prefixlen}", "dev", tap)
            _run("ip", "-n", ns, "link", "set", tap, "up")
        deadline = time.monotonic() + START_TIMEOUT_S
        while not all(self.reachable(n) for n in self.names):
            if time.monotonic() > deadline:
                raise LabError(f"namespaces not reachable from the host within {START_TIMEOUT_S}s")
            time.sleep(0.1)

    def close(self) -> None:
        """Remove everything this lab made (idempotent). Stop the processes started in its namespaces first."""
        if self._switch is not None:
            if self._switch.poll() is not None and self._switch.stderr is not None:
                self.switch_error = self._switch.stderr.read()[-2000:]  # it died: keep why
            if self._switch.poll() is None:
                self._switch.send_signal(signal.SIGTERM)
                try:
                    self._switch.wait(5)
                except subprocess.TimeoutExpired:
                    self._switch.kill()
                    self._switch.wait(5)
            for pipe in (self._switch.stdout, self._switch.stderr):
                if pipe is not None:
                    pipe.close()
            self._switch = None
        for ns in self._made_ns:
            _run("ip", "netns", "del", ns, check=False)
        self._made_ns = []
        for tap in self.taps.values():  # gone with the switch (non-persistent); a leftover is ours by name
            if _run("ip", "link", "show", tap, check=False).returncode == 0:
                _run("ip", "link", "del", tap, check=False)
        shutil.rmtree(self._dir, ignore_errors=True)

    # ------------------------------------------------------------ use

    def addr(self, name: str) -> str:
        return self.addrs[name]

    def exec_prefix(self, name: str) -> tuple[str, ...]:
        """The command prefix that runs a program in `name`'s namespace (`ip netns exec` execs it: same pid)."""
        return ("ip", "netns", "exec", self.ns[name])

    def reachable(self, name: str, port: int = 9) -> bool:
        """A TCP connect from the host to the node's address gets an answer (accepted or refused), not silence."""
        with socket.socket() as s:
            s.settimeout(0.3)
            try:
                s.connect((self.addrs[name], port))
            except ConnectionRefusedError:
                return True
            except OSError:
                return False
            return True

    def command(self, **cmd: Any) -> dict[str, Any]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(CMD_TIMEOUT_S)
            s.connect(self._control)
            s.sendall(json.dumps(cmd).encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                try:
                    chunk = s.recv(65536)
                except ConnectionResetError:
                    chunk = b""
                if not chunk:
                    break
                buf += chunk
        if not buf:
            err = self._switch.stderr.read()[-2000:] if self._switch and self._switch.poll() is not None and \
                self._switch.stderr else ""
            raise LabError(f"the switch did not answer {cmd}: {err}")
        resp: dict[str, Any] = json.loads(buf)
        if not resp.get("ok"):
            raise LabError(f"switch refused {cmd}: {resp}")
        return resp

    def link(self, a: str = "*", b: str = "*", delay_ms: float = 0.0, loss: float = 0.0) -> None:
        """Delay and loss on each direction of the links between a and b ("*" = every port, the host's included)."""
        self.command(op="link", a=a, b=b, delay_ms=delay_ms, loss=loss)

    def cut(self, a: str, b: str = "*") -> None:
        """Drop every frame between a and b, both ways ("*": a is cut from everyone, the host included)."""
        self.command(op="cut", a=a, b=b)

    def heal(self) -> None:
        self.command(op="heal")

    def stats(self) -> dict[str, int]:
        out: dict[str, int] = self.command(op="stats")["stats"]
        return out


def _disable_ipv6(ns: str | None, dev: str) -> None:
    """No router solicitations or duplicate address detection on our links: IPv4 only."""
    cmd = ["sysctl", "-q", "-w", f"net.ipv6.conf.{dev}.disable_ipv6=1"]
    _run(*(["ip", "netns", "exec", ns] if ns else []), *cmd, check=False)


def write_config(root: Path, lab: Lab, names: list[str], *, n: int, w: int, r: int, secret: str,
                 extra: str = "", vnodes: int = 16, http_port: int = 7001, gossip_port: int = 7101) -> Path:
    """A cluster.toml for nodes in the lab's namespaces: each on its own address, all on the same ports."""
    from node.config import Config

    lines = ["[cluster]", 'name = "netns"', f"replication_factor = {n}", f"write_quorum = {w}",
             f"read_quorum = {r}", f"vnodes = {vnodes}", 'data_dir = "data"', f'secret = "{secret}"', extra]
    if "auth" in Config.__struct_fields__:  # CONTRACT §5: the test process is not on loopback for these nodes
        lines += ["[auth]", 'anonymous = "write"']
    for name in names:
        lines += ["[[nodes]]", f'name = "{name}"', f'host = "{lab.addr(name)}"', f"http_port = {http_port}",
                  f"gossip_port = {gossip_port}"]
    path = root / "cluster.toml"
    path.write_text("\n".join(lines) + "\n")
    return path
