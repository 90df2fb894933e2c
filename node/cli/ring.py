"""`murmur decommission NAME`: ask a node to leave the ring (it streams its ranges to the nodes that take them
over, the ring settles without it, then it stops), and follow the move from another node until it is done.

A thin shell on node.client: every wait is bounded; it never signals a process. It sends an admin API key (when
given), never the cluster secret: that one stays between the nodes.
"""

from __future__ import annotations

import sys
import time

from node.client import ApiError, Client, Unreachable
from node.config import Config

POLL_S = 1.0
TIMEOUT_S = 10.0


def _members(url: str, api_key: str | None) -> dict[str, dict[str, object]]:
    with Client(url, api_key=api_key, timeout=TIMEOUT_S, retries=0) as c:
        return {mb.name: {"http": mb.http, "state": mb.state, "ring": mb.ring} for mb in c.cluster().members}


def run_decommission(cfg: Config, url: str, name: str, timeout_s: float, api_key: str | None = None) -> int:
    try:
        members = _members(url, api_key)
    except ApiError as e:
        print(f"murmur: cannot read the ring from {url}: {e}", file=sys.stderr)
        return 1
    if name not in members:
        print(f"murmur: {name} is not on the ring (members: {', '.join(sorted(members))})", file=sys.stderr)
        return 1
    others = [str(mb["http"]) for n, mb in members.items() if n != name and mb.get("state") == "alive"]
    if not others:
        print(f"murmur: no other live node to follow the decommission of {name} from", file=sys.stderr)
        return 1
    target = str(members[name]["http"])
    try:
        with Client(target, api_key=api_key, timeout=TIMEOUT_S, retries=0) as c:
            c.decommission()
    except Unreachable as e:
        print(f"murmur: {name} ({target}) did not answer: {e.message}", file=sys.stderr)
        return 1
    except ApiError as e:
        print(f"murmur: {name} refused to leave ({e.status}): {e.message}", file=sys.stderr)
        return 1
    print(f"{name}: leaving; its ranges are streamed to the nodes that take them over")
    follow = others[0]
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        time.sleep(POLL_S)
        try:
            cur = _members(follow, api_key)
        except ApiError:
            continue
        if name not in cur:
            print(f"{name}: left the ring; members now: {', '.join(sorted(cur))}")
            return 0
        ring = str(cur[name].get("ring", "normal"))
        if ring != last:
            if last == "leaving" and ring == "normal":
                print(f"murmur: the decommission of {name} was aborted; see GET {target}/admin/topology",
                      file=sys.stderr)
                return 1
            print(f"{name}: {ring}")
            last = ring
    print(f"murmur: {name} has not left after {timeout_s:.0f} s; see GET {target}/admin/topology", file=sys.stderr)
    return 1
