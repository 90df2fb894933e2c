"""Tombstone collection and cleanup on one node: the thin Trio shell of node/replication/collection.py, whose header
holds the rules. It decides nothing itself: it lists the candidates, runs each partition's round (two-way
anti-entropy sessions with the other replicas through NodeService.sync_with (node/cluster/anti_entropy.py), a digest from every other member),
and has the shard drop what a complete round allows; cleanup drops what the settled ring says this node does not
replicate. Every collaborator comes in the constructor; the clock is passed in (wall ms).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import structlog
import trio
import trio.lowlevel

from node.cluster.placement import Placement
from node.errors import Conflict, MurmurError
from node.replication import collection as col
from node.replication import messages as m

log = structlog.get_logger("murmur.collector")

TERMS_PER_STEP = 20_000  # terms a cleanup checks and drops between two checkpoints of the event loop
CALL_TIMEOUT_S = 5.0  # one digest or topology request of a round or a cleanup


class Collector:
    def __init__(
        self,
        me: str,
        service: Any,  # node.cluster.service.NodeService: its shard, sync_with, peers, is_up, topology_version
        placement: Placement,
        keeper: Any,  # node.cluster.rebalance.Keeper (its topology), or None in tests without topology changes
        grace_s: float,
        interval_s: float,
        clock_ms: Callable[[], int],
        on_changed: Callable[[], object] | None = None,  # called after memory was freed (e.g. request a snapshot)
    ) -> None:
        assert grace_s > 0 and interval_s >= 0, (grace_s, interval_s)
        self.me, self.service, self.placement, self.keeper = me, service, placement, keeper
        self.grace_ms = int(grace_s * 1000)
        self.interval_s = interval_s
        self.clock_ms = clock_ms
        self.on_changed = on_changed
        self._rotated_ms = clock_ms()
        self.cleaning = False
        self.last_cleanup_error: MurmurError | None = None
        self.collected = 0  # tombstones dropped since start
        self.last_pass: dict[str, Any] = {}
        self.last_cleanup: dict[str, Any] = {}

    def _moving(self) -> bool:
        t = getattr(self.keeper, "topology", None)
        return self.placement.next_ring is not None or bool(t is not None and t.moving)

    async def run(self) -> None:
        """A collection pass every interval_s (0: never)."""
        if not self.interval_s:
            return
        while True:
            await trio.sleep(self.interval_s)
            try:
                await self.collect_pass()
            except Exception:  # housekeeping must never take the node down; the next pass starts afresh
                log.exception("collection_failed", node=self.me)

    # ------------------------------------------------------------ collection

    async def collect_pass(self) -> dict[str, Any]:
        """List the expired tombstones, run a round per partition that has some, drop what complete rounds allow,
        compact. -> figures (also kept in last_pass)."""
        sh = self.service.shard
        now = self.clock_ms()
        t0 = time.perf_counter()
        floor = col.floor_ms(now, self.grace_ms)
        sh.tombstone_floor_ms = max(sh.tombstone_floor_ms, floor)
        rotated = 0
        if col.rotation_due(self._rotated_ms, now, self.grace_ms):
            rotated = sh.rotate_posting_tombstones()
            self._rotated_ms = now
        if self._moving():
            self.last_pass = {"skipped": "the ring is moving", "posting_tombstones_dropped": rotated}
            return self.last_pass
        version = self.service.topology_version
        ring, n = self.placement.ring, self.placement.n
        rounds = col.plan_rounds(sh.expired_tombstones(floor), ring, n, self.me, now)
        dropped = incomplete = 0
        blocked: dict[str, str] = {}
        for rnd in rounds:
            why = await self._run_round(rnd)
            if why is not None or self.service.topology_version != version or self._moving():
                incomplete += 1
                blocked[f"({rnd.start}, {rnd.end}]"] = why or "the ring moved"
                continue
            dropped += sh.collect(rnd.ids)
        freed = sh.compact() if dropped or rotated else 0
        self.collected += dropped
        self.last_pass = {
            "candidates": sum(len(r.ids) for r in rounds),
            "rounds": len(rounds),
            "rounds_incomplete": incomplete,
            "tombstones_dropped": dropped,
            "posting_tombstones_dropped": rotated,
            "bytes_freed": freed,
            "seconds": round(time.perf_counter() - t0, 3),
        }
        if dropped or rotated or incomplete:
            log.info("collection_pass", **self.last_pass, blocked=dict(list(blocked.items())[:3]))
        if (dropped or rotated) and self.on_changed is not None:
            self.on_changed()
        return self.last_pass

    async def _run_round(self, rnd: col.Round) -> str | None:
        """Hear from every member the round needs. -> None when it is complete, else why not."""
        svc = self.service
        for peer in rnd.replicas_needed():
            if not svc.is_up(peer):
                return f"{peer} is down"
            started = self.clock_ms()
            try:
                await svc.sync_with(peer, rnd.start, rnd.end)  # two-way: pulls and pushes
            except MurmurError as e:
                return f"anti-entropy with {peer}: {e.code}"
            rnd.on_synced(peer, started)
        for peer in rnd.others_needed():
            if not svc.is_up(peer):
                return f"{peer} is down"
            asked = self.clock_ms()
            try:
                resp = await svc.peers.call(peer, m.DigestReq(rnd.start, rnd.end), CALL_TIMEOUT_S)
            except MurmurError as e:
                return f"digest of {peer}: {e.code}"
            if resp.buckets:
                return f"{peer} holds leftover data of the partition (murmur cleanup there)"
            rnd.on_empty(peer, asked)
        return None if rnd.complete() else "incomplete"

    # ------------------------------------------------------------ cleanup

    async def cleanup(self) -> dict[str, Any]:
        """Drop what this node holds of the ranges it does not replicate (node/replication/collection.py says
        when and why it is safe). Raises Conflict (409) while the ring moves, while a member has another idea of
        the ring or cannot be asked, or while another cleanup runs. -> figures."""
        if self.cleaning:
            raise Conflict(f"a cleanup is already running on {self.me}")
        self.cleaning = True
        self.last_cleanup_error = None
        try:
            return await self._cleanup()
        except MurmurError as e:
            self.last_cleanup_error = e
            raise
        finally:
            self.cleaning = False

    async def _agreed(self) -> str | None:
        t = getattr(self.keeper, "topology", None)
        version = self.service.topology_version
        answers: dict[str, tuple[int, bool] | None] = {}

        async def ask(node: str) -> None:
            try:
                resp = await self.service.peers.call(node, m.TopologyReq(), CALL_TIMEOUT_S)
            except MurmurError:
                answers[node] = None
                return
            tp = resp.topology
            answers[node] = None if tp is None else (tp.version, tp.moving)

        async with trio.open_nursery() as nursery:
            for node in self.placement.ring.nodes:
                if node != self.me:
                    nursery.start_soon(ask, node)
        return col.agreed(version, self._moving() or bool(t is not None and t.role(self.me) != "normal"), answers)

    async def _cleanup(self) -> dict[str, Any]:
        why = await self._agreed()
        if why is not None:
            raise Conflict(f"{self.me} cannot clean up now: {why}")
        sh = self.service.shard
        t0 = time.perf_counter()
        version = self.service.topology_version
        before = {"store_bytes": sh.store.memory_bytes(), "index_bytes": sh.index.memory_bytes()}
        ranges = col.owned_ranges(self.placement.ring, self.placement.n, self.me)
        # No await from the last check to here: no topology can have been installed meanwhile.
        tweets, tombstones, outbox = sh.drop_tweets_outside(ranges)
        ptombs = sh.drop_posting_meta_outside(ranges)
        terms = list(sh.index.terms())
        dropped_terms = postings = 0
        for k in range(0, len(terms), TERMS_PER_STEP):
            await trio.lowlevel.checkpoint()
            if self._moving() or self.service.topology_version != version:
                raise Conflict(f"{self.me}: the ring started moving during the cleanup; run it again once settled")
            gone = sh.terms_outside(ranges, terms[k : k + TERMS_PER_STEP])
            dropped_terms += len(gone)
            postings += sh.drop_terms(gone)
        freed = sh.compact(force=True)
        self.last_cleanup = {
            "node": self.me,
            "topology": version,
            "tweets_dropped": tweets,
            "tombstones_dropped": tombstones,
            "outbox_dropped": outbox,
            "terms_dropped": dropped_terms,
            "postings_dropped": postings,
            "posting_tombstones_dropped": ptombs,
            "store_bytes_before": before["store_bytes"],
            "store_bytes_after": sh.store.memory_bytes(),
            "index_bytes_before": before["index_bytes"],
            "index_bytes_after": sh.index.memory_bytes(),
            "compaction_bytes_freed": freed,
            "seconds": round(time.perf_counter() - t0, 3),
        }
        log.info("cleanup", **self.last_cleanup)
        if self.on_changed is not None:
            self.on_changed()
        return self.last_cleanup
