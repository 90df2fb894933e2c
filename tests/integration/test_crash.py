"""kill -9 right after acknowledged writes, restart: every acknowledged tweet is back with its last content and
every acknowledged delete stays deleted. Run twice: once from the WAL alone, once from a snapshot + WAL tail."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.support.procs import NodeProc, write_config


def _write_burst(url: str, tag: str, n: int) -> tuple[dict[int, str], set[int]]:
    """Concurrent creates, a bulk, edits and deletes. Returns (acknowledged id -> text, acknowledged deletes)."""
    acked: dict[int, str] = {}
    deleted: set[int] = set()

    def create(i: int) -> tuple[int, str] | None:
        text = f"{tag} crashy tweet {i} #{tag}"
        with httpx.Client(base_url=url, timeout=30) as c:
            r = c.post("/tweets", json={"text": text, "user": f"u{i % 7}"})
            return (r.json()["id"], text) if r.status_code == 201 else None

    with ThreadPoolExecutor(16) as ex:
        for res in ex.map(create, range(n)):
            if res:
                acked[res[0]] = res[1]
    with httpx.Client(base_url=url, timeout=30) as c:
        body = "\n".join(f'{{"text": "{tag} bulk {i} crashy", "user": "bulk"}}' for i in range(300))
        r = c.post("/tweets/bulk", content=body, headers={"content-type": "application/x-ndjson"})
        assert r.status_code == 200
        for it in r.json()["items"]:
            assert it["status"] == 201
            acked[it["id"]] = f"{tag} bulk {it['line'] - 1} crashy"
        ids = sorted(acked)
        for i in ids[:20]:
            text = f"{tag} edited {i} crashy"
            assert c.patch(f"/tweets/{i}", json={"text": text}).status_code == 200
            acked[i] = text
        for i in ids[20:40]:
            assert c.delete(f"/tweets/{i}").status_code == 204
            deleted.add(i)
            del acked[i]
    return acked, deleted


def _check(url: str, tag: str, acked: dict[int, str], deleted: set[int]) -> None:
    with httpx.Client(base_url=url, timeout=30) as c:
        for i, text in acked.items():
            r = c.get(f"/tweets/{i}")
            assert r.status_code == 200, (i, r.text)
            assert r.json()["text"] == text
        for i in deleted:
            assert c.get(f"/tweets/{i}").status_code == 404
        found: set[int] = set()
        max_id = None
        while True:
            params: dict[str, str | int] = {"q": f"{tag} crashy", "count": 100}
            if max_id is not None:
                params["max_id"] = max_id
            s = c.get("/search", params=params).json()
            found |= {t["id"] for t in s["statuses"]}
            max_id = s["search_metadata"]["next_max_id"]
            if max_id is None:
                break
        assert found == set(acked), (len(found), len(acked))
        edited = [i for i, t in acked.items() if " edited " in t]
        hits = {t["id"] for t in c.get("/search", params={"q": f"{tag} edited", "count": 100}).json()["statuses"]}
        assert hits == set(edited)


def test_kill_9_loses_nothing_acknowledged(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, ["n1"])
    nd = NodeProc(cfg, "n1").start()
    try:
        acked, deleted = _write_burst(nd.url, "alpha", 200)
        nd.kill()
        nd.start()
        _check(nd.url, "alpha", acked, deleted)
        # a graceful stop writes a snapshot; then more writes land in the WAL only; then kill -9 again
        assert nd.stop() == 0
        assert list((tmp_path / "data" / "n1").rglob("snap-*")), "a graceful stop must leave a snapshot"
        nd.start()
        acked2, deleted2 = _write_burst(nd.url, "beta", 150)
        nd.kill()
        nd.start()
        _check(nd.url, "alpha", acked, deleted)
        _check(nd.url, "beta", acked2, deleted2)
    finally:
        nd.stop()
