"""Load generators of scripts/bench_cluster.py: wrk (C, with a Lua script that spreads its connections over the
nodes and draws each request from a list) and a raw trio client in this process, the fallback.

Both run closed-loop connections for a fixed time and return one LoadResult; both count failed requests (a
status other than 200/201, a socket error, a timeout) and partial answers (search_metadata.partial). Never
starts a node; the only processes it starts are wrk itself (and apt-get once, to install wrk when asked).

Which one is the bottleneck: measured with `scripts/bench_cluster.py --limit 5000 --seconds 2 --only 3node
--loadgen-ab` (the random mix at 32 connections, wrk and the trio client alternated 3 times on the same cluster;
the 2 cores shared with other work, so the nodes got 0.9 to 1.8 cores from one row to the next): both load
generators used about 0.1 core (~80 µs per request, wrk's Lua callbacks and 32 threads included) for 560 to
1,290 q/s, and the nodes used the rest: the nodes are the bottleneck, not the client. In each pair wrk answered
4-33 % more q/s with a lower p99 (the trio client is one thread: its own scheduling delays add to every
closed-loop cycle), so wrk is the default and --loadgen trio the fallback for a machine without it.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import Conn, pct

WRK_TIMEOUT_S = 10  # a request not answered by then counts as failed (wrk's own default is 2 s)
TRIO_WARMUP_S = 0.5  # the trio client's first half second is not counted (connections, caches)

_LUA = r"""
-- Murmur benchmark driver for wrk. Environment: BENCH_ADDRS "host:port,host:port,...", BENCH_FILES (thread i
-- reads BENCH_FILES .. i .. ".txt": one request path or POST body a line, its own share of the list, so that no
-- thread reads more than its share before the run), BENCH_METHOD (GET or POST), BENCH_PATH (the POST target).
-- One connection per thread; thread i talks to node i mod n, so the connections are spread over the nodes.
local addrs = {}
for hp in string.gmatch(os.getenv("BENCH_ADDRS"), "[^,]+") do
  local host, port = hp:match("^(.*):(%d+)$")
  table.insert(addrs, wrk.lookup(host, port)[1])
end
local threads = {}

function setup(thread)
  local i = #threads + 1
  thread.addr = addrs[((i - 1) % #addrs) + 1]
  thread:set("tid", i)
  table.insert(threads, thread)
end

function init(args)
  items = {}
  for line in io.lines(os.getenv("BENCH_FILES") .. tid .. ".txt") do
    items[#items + 1] = line
  end
  method = os.getenv("BENCH_METHOD")
  target = os.getenv("BENCH_PATH")
  pos = 0
  ok, bad, partial = 0, 0, 0
end

function request()
  pos = pos % #items + 1
  if method == "GET" then
    return wrk.format("GET", items[pos])
  end
  return wrk.format("POST", target, {["Content-Type"] = "application/json"}, items[pos])
end

function response(status, headers, body)
  if status == 200 or status == 201 then
    ok = ok + 1
    if body:find('"partial":true', 1, true) then
      partial = partial + 1
    end
  else
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local ok_, bad_, partial_ = 0, 0, 0
  for _, t in ipairs(threads) do
    ok_ = ok_ + t:get("ok")
    bad_ = bad_ + t:get("bad")
    partial_ = partial_ + t:get("partial")
  end
  local e = summary.errors
  local f = math.floor
  io.write(string.format(
    'BENCH {"requests":%d,"duration_us":%d,"ok":%d,"bad":%d,"partial":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"timeout":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, ok_, bad_, partial_, e.connect, e.read, e.write, e.timeout,
    f(latency:percentile(50)), f(latency:percentile(99)), f(latency.max)))
end
"""


class LoadResult(msgspec.Struct):
    ok: int  # answered 200 or 201
    failed: int  # any other status, a socket error or a timeout
    partial: int  # 200s whose search_metadata.partial was true
    seconds: float  # the measured window
    p50_ms: float
    p99_ms: float
    max_ms: float
    loadgen_cores: float  # CPU seconds the load generator used per second of the window
    node_cores: float = 0.0  # CPU seconds all nodes used per second (filled in by the caller)
    hits: float | None = None  # mean statuses per answer (the trio client counts them; wrk does not)
    tool: str = ""

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0


def ensure_wrk() -> str | None:
    """wrk's path; installs Debian's package when it is missing (saying so). None if that did not work."""
    exe = shutil.which("wrk")
    if exe is not None:
        return exe
    print("wrk is not installed: installing Debian's package (apt-get install -y wrk) ...", flush=True)
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "install", "-y", "-qq", "wrk"], ["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
        try:
            r = subprocess.run(sudo + cmd, env=env, capture_output=True, timeout=600, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            print(f"  {' '.join(cmd)} failed: {e}")
            return None
        if cmd[1] == "install" and r.returncode == 0:
            break
    exe = shutil.which("wrk")
    if exe is None:
        print(f"  could not install wrk ({r.stderr.decode(errors='replace').strip()[-300:]})")
    return exe


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


class Wrk:
    """Runs `wrk -t C -c C` (one connection per thread, so each thread can be pointed at its own node)."""

    def __init__(self, exe: str, workdir: Path) -> None:
        self.exe = exe
        self.dir = Path(tempfile.mkdtemp(prefix="wrk-", dir=workdir))
        self.script = self.dir / "murmur.lua"
        self.script.write_text(_LUA)
        self._runs = 0

    def _files(self, lines: Sequence[str], threads: int) -> str:
        """One file per thread with its share of `lines` (every thread-th line), or, for a list shorter than
        4 lines a thread, the whole list rotated to start at the thread's own place. -> the files' prefix."""
        self._runs += 1
        prefix = self.dir / f"run{self._runs}-"
        for i in range(threads):
            if len(lines) >= 4 * threads:
                share = list(lines[i::threads])
            else:
                k = i % len(lines)
                share = [*lines[k:], *lines[:k]]
            Path(f"{prefix}{i + 1}.txt").write_text("\n".join(share) + "\n")
        return str(prefix)

    def run(
        self,
        addrs: list[tuple[str, int]],
        lines: Sequence[str],
        conns: int,
        seconds: float,
        method: str = "GET",
        path: str = "/tweets",
    ) -> LoadResult:
        """`lines`: request paths (GET) or JSON bodies for POST `path`, shared out among the connections."""
        env = {
            **os.environ,
            "BENCH_ADDRS": ",".join(f"{h}:{p}" for h, p in addrs),
            "BENCH_FILES": self._files(lines, conns),
            "BENCH_METHOD": method,
            "BENCH_PATH": path,
        }
        secs = max(1, round(seconds))
        argv = [
            self.exe, "-t", str(conns), "-c", str(conns), "-d", f"{secs}s", "--timeout", f"{WRK_TIMEOUT_S}s",
            "-s", str(self.script), f"http://{addrs[0][0]}:{addrs[0][1]}/",
        ]
        cpu0 = _children_cpu()
        r = subprocess.run(argv, env=env, capture_output=True, timeout=secs + 4 * WRK_TIMEOUT_S + 30, check=False)
        cpu = _children_cpu() - cpu0
        out = r.stdout.decode(errors="replace")
        line = next((ln for ln in out.splitlines() if ln.startswith("BENCH ")), None)
        if r.returncode != 0 or line is None:
            raise RuntimeError(f"wrk failed ({r.returncode}): {out[-500:]} {r.stderr.decode(errors='replace')[-500:]}")
        d = json.loads(line[6:])
        dur = d["duration_us"] / 1e6
        return LoadResult(
            ok=d["ok"],
            failed=d["bad"] + d["connect"] + d["read"] + d["write"] + d["timeout"],
            partial=d["partial"],
            seconds=dur,
            p50_ms=d["p50_us"] / 1000,
            p99_ms=d["p99_us"] / 1000,
            max_ms=d["max_us"] / 1000,
            loadgen_cores=cpu / dur if dur > 0 else 0.0,
            tool="wrk",
        )


class TrioLoad:
    """The same closed loop from this process: connection i talks to node i mod n (raw keep-alive sockets)."""

    def run(
        self,
        addrs: list[tuple[str, int]],
        reqs: Sequence[bytes],
        conns: int,
        seconds: float,
        count_hits: bool = False,
        warmup_s: float = TRIO_WARMUP_S,
    ) -> LoadResult:
        return trio.run(self._run, addrs, reqs, conns, seconds, count_hits, warmup_s)

    async def _run(
        self,
        addrs: list[tuple[str, int]],
        reqs: Sequence[bytes],
        conns: int,
        seconds: float,
        count_hits: bool,
        warmup_s: float,
    ) -> LoadResult:
        lat: list[float] = []
        counts = {"ok": 0, "failed": 0, "partial": 0, "hits": 0}
        warm_until = trio.current_time() + warmup_s
        stop = warm_until + seconds

        async def client(c: int) -> None:
            conn = Conn(*addrs[c % len(addrs)])
            k = c * 7919
            try:
                while (now := trio.current_time()) < stop:
                    t0 = time.perf_counter()
                    try:
                        status, body = await conn.request(reqs[k % len(reqs)])
                    except (OSError, ConnectionError, trio.BrokenResourceError):
                        await conn.aclose()
                        status, body = 0, b""
                    dt = (time.perf_counter() - t0) * 1000
                    k += 1
                    if now < warm_until:
                        continue
                    if status not in (200, 201):
                        counts["failed"] += 1
                        continue
                    counts["ok"] += 1
                    lat.append(dt)
                    counts["partial"] += b'"partial":true' in body
                    if count_hits:
                        counts["hits"] += body.count(b'"id_str":')
            finally:
                await conn.aclose()

        cpu0 = time.process_time()
        t_warm = 0.0
        async with trio.open_nursery() as n:
            for c in range(conns):
                n.start_soon(client, c)
            await trio.sleep_until(warm_until)
            cpu0, t_warm = time.process_time(), time.perf_counter()
        wall = time.perf_counter() - t_warm
        return LoadResult(
            ok=counts["ok"],
            failed=counts["failed"],
            partial=counts["partial"],
            seconds=seconds,
            p50_ms=pct(lat, 50),
            p99_ms=pct(lat, 99),
            max_ms=max(lat, default=float("nan")),
            loadgen_cores=(time.process_time() - cpu0) / wall if wall > 0 else 0.0,
            hits=counts["hits"] / counts["ok"] if count_hits and counts["ok"] else None,
            tool="trio",
        )


def node_cores(pids: list[int], cpu_of: Callable[[int], float], run: Callable[[], LoadResult]) -> LoadResult:
    """`run()` with the CPU the nodes used meanwhile, per second of wall time."""
    c0, t0 = sum(map(cpu_of, pids)), time.perf_counter()
    res = run()
    wall = time.perf_counter() - t0
    res.node_cores = (sum(map(cpu_of, pids)) - c0) / wall if wall > 0 else 0.0
    return res
