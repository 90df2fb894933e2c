"""`murmur search`, `murmur status`, `murmur snapshot` and `murmur cleanup`: one call each through node.client (a
long cleanup is followed by polling), printed for a human.

The `format_*` functions are pure and tolerant of missing fields (the node's JSON may grow); the commands only
fetch and print. Never raise on an odd answer: show what is there.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import msgspec

from node.client import ApiError, Client, Unreachable

TIMEOUT_S = 30.0
RETRIES = 2  # a one-shot command tries a busy or unreachable node 3 times (1.5 s of backoff), then says so


def one_line(text: str) -> str:
    return " ".join(text.split())


def format_tweet(t: dict[str, Any]) -> str:
    ident = t.get("id_str") or t.get("id") or "?"
    return f"{ident}  {t.get('created_at', '?')}  @{t.get('user', '?')}  {one_line(str(t.get('text', '')))}"


def format_search(body: dict[str, Any]) -> list[str]:
    statuses = body.get("statuses") or []
    meta = body.get("search_metadata") or {}
    lines = [format_tweet(t) for t in statuses if isinstance(t, dict)]
    foot = f"-- {len(statuses)} results in {meta.get('completed_in_ms', '?')} ms"
    if meta.get("next_max_id") is not None:
        foot += f", next_max_id={meta['next_max_id']}"
    if meta.get("partial"):
        foot += ", PARTIAL (some partitions did not answer)"
    if meta.get("coordinator"):
        foot += f", coordinator {meta['coordinator']}"
    return [*lines, foot]


_STATE = {
    "alive": "UN",
    "up": "UN",
    "suspect": "US",
    "suspected": "US",
    "dead": "DN",
    "down": "DN",
    "left": "DL",
}


def _pct(v: Any) -> str:
    if isinstance(v, int | float):
        return f"{v * 100:.1f}%" if v <= 1 else f"{v:.1f}%"  # a fraction, or already a percentage
    return "?"


def _partitions(v: Any) -> str:
    if isinstance(v, dict):
        return " ".join(f"{k}={n}" for k, n in v.items())
    return "?" if v is None else str(v)


def format_cluster(body: dict[str, Any]) -> list[str]:
    head = f"Cluster: {body.get('cluster', '?')}   N={body.get('n', '?')} W={body.get('w', '?')} R={body.get('r', '?')}"
    rows = [("--", "Name", "Address", "Gossip", "Owns", "Partitions", "Tweets")]
    for m in body.get("members") or []:
        if not isinstance(m, dict):
            continue
        state = str(m.get("state", "?"))
        code = _STATE.get(state.lower(), state)
        ring = {"joining": "J", "leaving": "L"}.get(str(m.get("ring", "normal")))
        if ring is not None and len(code) == 2:
            code = code[0] + ring
        tweets = m.get("tweets")
        rows.append(
            (
                code,
                str(m.get("name", "?")),
                str(m.get("http", "?")),
                str(m.get("gossip", "?")),
                _pct(m.get("ring_share")),
                _partitions(m.get("partitions")),
                f"{tweets:,}" if isinstance(tweets, int) else "?",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    table = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    legend = "Status: U=up D=down / State: N=normal S=suspect J=joining L=leaving or left"
    return [head, legend, *table]


def run_search(
    url: str,
    query: str,
    count: int | None,
    max_id: str | None,
    result_type: str | None,
    as_json: bool,
    api_key: str | None = None,
) -> int:
    try:
        with Client(url, api_key=api_key, timeout=TIMEOUT_S, retries=RETRIES) as c:
            body = msgspec.to_builtins(c.search(query, count=count, max_id=max_id, result_type=result_type))
    except ApiError as e:
        print(_failed("search failed", url, e), file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(body, ensure_ascii=False, indent=2))
    else:
        print("\n".join(format_search(body)))
    return 0


def run_status(url: str, api_key: str | None = None) -> int:
    try:
        with Client(url, api_key=api_key, timeout=TIMEOUT_S, retries=RETRIES) as c:
            body = msgspec.to_builtins(c.cluster())
    except ApiError as e:
        print(_failed("/cluster failed", url, e), file=sys.stderr)
        return 1
    print("\n".join(format_cluster(body)))
    return 0


def run_snapshot(url: str, api_key: str | None = None) -> int:
    """`murmur snapshot`: POST /admin/snapshot; the node answers 202 at once and writes in the background."""
    try:
        with Client(url, api_key=api_key, timeout=TIMEOUT_S, retries=RETRIES) as c:
            body = c.snapshot()
    except ApiError as e:
        print(_failed("snapshot failed", url, e), file=sys.stderr)
        return 1
    extra = "  ".join(f"{k}={v}" for k, v in body.items())
    print(f"{url}: snapshot started" + (f"  {extra}" if extra else ""))
    return 0


CLEANUP_POLL_S = 1.0
CLEANUP_TIMEOUT_S = 3600.0  # `murmur cleanup` follows a long cleanup this long


def format_cleanup(body: dict[str, Any]) -> str:
    def mb(k: str) -> str:
        v = body.get(k)
        return f"{v / 1e6:.1f}" if isinstance(v, int | float) else "?"

    return (
        f"dropped {body.get('tweets_dropped', '?')} tweets, {body.get('tombstones_dropped', '?')} tombstones, "
        f"{body.get('terms_dropped', '?')} terms ({body.get('postings_dropped', '?')} postings), "
        f"{body.get('posting_tombstones_dropped', '?')} posting tombstones, "
        f"{body.get('outbox_dropped', '?')} outbox entries; store {mb('store_bytes_before')} -> "
        f"{mb('store_bytes_after')} MB, index {mb('index_bytes_before')} -> {mb('index_bytes_after')} MB, "
        f"in {body.get('seconds', '?')} s"
    )


def run_cleanup(url: str, api_key: str | None = None) -> int:
    """`murmur cleanup`: POST /admin/cleanup, and follow it (GET /admin/cleanup) when it outlasts the request."""
    try:
        with Client(url, api_key=api_key, timeout=TIMEOUT_S, retries=RETRIES) as c:
            body = c.cleanup()
            deadline = time.monotonic() + CLEANUP_TIMEOUT_S
            while body.get("status") == "running" and time.monotonic() < deadline:
                time.sleep(CLEANUP_POLL_S)
                st = c.cleanup_status()
                if not st.get("running"):
                    if st.get("last_error"):
                        print(f"murmur: cleanup failed: {st['last_error']}", file=sys.stderr)
                        return 1
                    body = st.get("last") or {}
    except ApiError as e:
        print(_failed("cleanup refused", url, e), file=sys.stderr)
        return 1
    if body.get("status") == "running":
        print(f"murmur: {url}: the cleanup still runs after {CLEANUP_TIMEOUT_S:.0f} s", file=sys.stderr)
        return 1
    print(f"{url}: cleanup done: {format_cleanup(body)}")
    return 0


def _failed(what: str, url: str, e: ApiError) -> str:
    if isinstance(e, Unreachable):
        return f"murmur: cannot reach {url}: {e.message}"
    return f"murmur: {what}: {e.code}: {e.message}"
