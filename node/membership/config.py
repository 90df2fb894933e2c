"""Every timing and fan-out of the gossip protocol, with its unit and the formula that uses it (as memberlist's
config.go documents its fields). Defaults are memberlist's LAN defaults. Pure: the formulas take the member count.
"""

from __future__ import annotations

import math

import msgspec

from node.errors import ConfigError


class MembershipConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    probe_interval_s: float = 1.0
    """Seconds between the starts of two probes (one "protocol period"). Scaled by local health:
    period = probe_interval_s * (awareness score + 1). A probe that has no ack by the end of its period makes its
    target suspect."""

    probe_timeout_s: float = 0.5
    """Seconds to wait for the direct ack before asking `indirect_checks` peers to probe for us; also how long a
    relay waits before it answers Nack. Scaled like the period: probe_timeout_s * (score + 1). Should be about the
    99th percentile round trip, and below probe_interval_s."""

    indirect_checks: int = 3
    """k: peers asked to ping an unresponsive target (PingReq). More means fewer false suspicions under loss,
    at 4 packets per check."""

    suspicion_mult: int = 4
    """Suspicion timeout floor: min = suspicion_mult * max(1, log10(n)) * probe_interval_s seconds for n known
    members. Also sets Lifeguard's confirmations wanted: K = suspicion_mult - 2 (0 when n - 2 < K)."""

    suspicion_max_timeout_mult: int = 6
    """Suspicion timeout ceiling: max = suspicion_max_timeout_mult * min. A suspicion starts at max and falls with
    C independent confirmations to max(min, max - (max - min) * log(C + 1) / log(K + 1)) (Lifeguard)."""

    retransmit_mult: int = 4
    """Each queued update is sent retransmit_mult * ceil(log10(n + 1)) times (piggybacked or gossiped), then
    dropped: enough for an epidemic to reach all n members with high probability."""

    gossip_nodes: int = 3
    """Random members (alive or suspect) sent a Gossip packet of queued updates every gossip_interval_s."""

    gossip_to_dead_s: float = 30.0
    """Seconds after a member is declared dead (not left) during which gossip rounds may still pick it, as
    memberlist's GossipToTheDeadTime: a node wrongly declared dead (paused, cut off) hears it and refutes at
    once instead of waiting for the next full-state exchange."""

    gossip_interval_s: float = 0.2
    """Seconds between gossip rounds; no packet is sent when the update queue is empty."""

    push_pull_interval_s: float = 30.0
    """Seconds between full-state exchanges (PushPull) with one random live member, plus one random dead one
    (that is how a healed partition finds itself again). Above 32 members the interval grows as
    push_pull_interval_s * (ceil(log2(n) - log2(32)) + 1), so the cluster's total stream load stays bounded."""

    awareness_max_multiplier: int = 8
    """Lifeguard local health: the score runs 0 .. awareness_max_multiplier - 1; probe period and timeout are
    multiplied by score + 1. +1 per probe with no ack and missing nacks, +1 per refutation of a suspicion about
    ourselves, -1 per successful probe."""

    dead_keep_s: float = 86_400.0
    """Seconds a dead or left member stays in the table (for reconnects and to outvote stale gossip), then it is
    forgotten; bounds the table together with MEMBERS_MAX."""

    def validate(self) -> MembershipConfig:
        """Raises ConfigError naming the key; returns self so it chains."""
        def need(key: str, ok: bool, why: str) -> None:
            if not ok:
                raise ConfigError(f"membership.{key}", why)

        need("probe_interval_s", self.probe_interval_s > 0, "must be > 0")
        need("probe_timeout_s", 0 < self.probe_timeout_s < self.probe_interval_s, "must be > 0 and < probe_interval_s")
        need("indirect_checks", 0 <= self.indirect_checks <= 16, "must be 0..16")
        need("suspicion_mult", 1 <= self.suspicion_mult <= 100, "must be 1..100")
        need("suspicion_max_timeout_mult", 1 <= self.suspicion_max_timeout_mult <= 100, "must be 1..100")
        need("retransmit_mult", 1 <= self.retransmit_mult <= 100, "must be 1..100")
        need("gossip_nodes", 0 <= self.gossip_nodes <= 64, "must be 0..64")
        need("gossip_interval_s", self.gossip_interval_s > 0, "must be > 0")
        need("gossip_to_dead_s", self.gossip_to_dead_s >= 0, "must be >= 0")
        need("push_pull_interval_s", self.push_pull_interval_s > 0, "must be > 0")
        need("awareness_max_multiplier", 1 <= self.awareness_max_multiplier <= 64, "must be 1..64")
        need("dead_keep_s", self.dead_keep_s > 0, "must be > 0")
        return self

    # -- the formulas, in one place --

    def suspicion_min_s(self, n: int) -> float:
        return self.suspicion_mult * max(1.0, math.log10(max(1, n))) * self.probe_interval_s

    def suspicion_max_s(self, n: int) -> float:
        return self.suspicion_max_timeout_mult * self.suspicion_min_s(n)

    def suspicion_k(self, n: int) -> int:
        k = self.suspicion_mult - 2
        return 0 if n - 2 < k else max(0, k)

    def retransmit_limit(self, n: int) -> int:
        return self.retransmit_mult * math.ceil(math.log10(n + 1))

    def push_pull_period_s(self, n: int) -> float:
        if n <= 32:
            return self.push_pull_interval_s
        return self.push_pull_interval_s * (math.ceil(math.log2(n) - math.log2(32)) + 1)
