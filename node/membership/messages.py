"""Gossip wire messages (msgspec msgpack, frozen, tagged) and the packet seal (HMAC-SHA256, size bound).
Tag values are protocol: append, never renumber. Nothing here does I/O; every list and string has a bound that the
decoder enforces, so a hostile packet cannot make a receiver allocate without limit.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

import msgspec

PACKET_BYTES_MAX = 1400  # a sealed UDP packet, at most: fits a 1500-byte Ethernet MTU with IP/UDP headers
SEAL_VERSION = 1
TAG_BYTES = 32  # HMAC-SHA256
SEAL_OVERHEAD_BYTES = 1 + TAG_BYTES  # version byte + tag
PAYLOAD_BYTES_MAX = PACKET_BYTES_MAX - SEAL_OVERHEAD_BYTES
NAME_CHARS_MAX = 64
ADDR_CHARS_MAX = 128
PIGGYBACK_MAX = 64  # updates in one packet: far more than fit in PACKET_BYTES_MAX anyway
MEMBERS_MAX = 4096  # members one node tracks, and entries of a PushPull

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=NAME_CHARS_MAX)]
Addr = Annotated[str, msgspec.Meta(max_length=ADDR_CHARS_MAX)]
Seq = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
Incarnation = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
# The core believes no update above INCARNATION_MAX and no accusation (Suspect/Dead/Left) at it, so a refutation,
# max(ours, accused) + 1, is at most INCARNATION_MAX and always fits the wire bound above. Legitimate incarnations
# grow by one per refutation and never come near it: only a forger holding the secret could send such numbers.
INCARNATION_MAX = 2**62


# -- state updates: gossiped as piggyback, one per member at a time (a newer one replaces an older one) --


class Alive(msgspec.Struct, frozen=True, tag=1, array_like=True):
    node: Name
    incarnation: Incarnation
    addr: Addr


class Suspect(msgspec.Struct, frozen=True, tag=2, array_like=True):
    node: Name
    incarnation: Incarnation
    src: Name  # who suspects: distinct suspecters are Lifeguard's independent confirmations


class Dead(msgspec.Struct, frozen=True, tag=3, array_like=True):
    node: Name
    incarnation: Incarnation
    src: Name


class Left(msgspec.Struct, frozen=True, tag=4, array_like=True):
    node: Name
    incarnation: Incarnation


Update = Alive | Suspect | Dead | Left
Piggyback = Annotated[list[Update], msgspec.Meta(max_length=PIGGYBACK_MAX)]


# -- probes (UDP) --


class Ping(msgspec.Struct, frozen=True, tag=10, array_like=True):
    seq: Seq
    src: Name
    target: Name  # the receiver ignores a ping meant for another name (an address reused by a new node)
    piggyback: Piggyback


class Ack(msgspec.Struct, frozen=True, tag=11, array_like=True):
    seq: Seq  # the Ping's
    src: Name
    piggyback: Piggyback


class PingReq(msgspec.Struct, frozen=True, tag=12, array_like=True):
    """Ask the receiver to ping `target` for us and tell us the outcome (SWIM's indirect probe)."""

    seq: Seq  # the requester's probe seq, echoed in IndirectAck / Nack
    src: Name
    target: Name
    target_addr: Addr


class IndirectAck(msgspec.Struct, frozen=True, tag=13, array_like=True):
    seq: Seq
    src: Name  # the relay
    target: Name


class Nack(msgspec.Struct, frozen=True, tag=14, array_like=True):
    """Lifeguard: the relay got no ack in time. A missing nack means the relay (or our link) is unhealthy."""

    seq: Seq
    src: Name
    target: Name


class Gossip(msgspec.Struct, frozen=True, tag=15, array_like=True):
    src: Name
    piggyback: Piggyback


# -- anti-entropy (a stream over the node transport, not UDP: it can exceed PACKET_BYTES_MAX) --


class MemberState(msgspec.Struct, frozen=True, array_like=True):
    node: Name
    incarnation: Incarnation
    addr: Addr
    state: int  # swim.State value


class PushPull(msgspec.Struct, frozen=True, tag=20, array_like=True):
    src: Name
    src_addr: Addr
    members: Annotated[list[MemberState], msgspec.Meta(max_length=MEMBERS_MAX)]
    reply: bool  # False: a request (the receiver merges and answers with its own state); True: that answer


Message = Ping | Ack | PingReq | IndirectAck | Nack | Gossip | PushPull
PACKET_TYPES = (Ping, Ack, PingReq, IndirectAck, Nack, Gossip)  # sent over UDP, so sealed and size-bounded

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Message)
_update_decoder = msgspec.msgpack.Decoder(Update)


def encode(msg: Message | Update) -> bytes:
    return _encoder.encode(msg)


def decode(data: bytes) -> Message:
    """Raises msgspec.DecodeError / ValidationError on a malformed or out-of-bounds message."""
    return _decoder.decode(data)


def decode_update(data: bytes) -> Update:
    return _update_decoder.decode(data)


def _tag(secret: bytes, payload: bytes) -> bytes:
    # the label keeps a gossip MAC from ever being valid as an RPC handshake MAC (same secret)
    return hmac.new(secret, b"murmur-gossip\x00" + bytes([SEAL_VERSION]) + payload, hashlib.sha256).digest()


def seal(secret: bytes, payload: bytes) -> bytes:
    """version byte | HMAC-SHA256(secret, label | version | payload) | payload. Raises ValueError past the bound.
    No nonce: a replayed packet is harmless to the core (old seqs match no probe, old incarnations lose)."""
    assert secret, "the cluster secret must not be empty"
    if len(payload) > PAYLOAD_BYTES_MAX:
        raise ValueError(f"gossip payload of {len(payload)} bytes exceeds {PAYLOAD_BYTES_MAX}")
    return bytes([SEAL_VERSION]) + _tag(secret, payload) + payload


def open_sealed(secret: bytes, data: bytes) -> bytes | None:
    """The payload, or None for anything oversized, truncated, of another version or with a bad tag."""
    if len(data) > PACKET_BYTES_MAX or len(data) < SEAL_OVERHEAD_BYTES or data[0] != SEAL_VERSION:
        return None
    tag, payload = data[1:SEAL_OVERHEAD_BYTES], data[SEAL_OVERHEAD_BYTES:]
    if not hmac.compare_digest(tag, _tag(secret, payload)):
        return None
    return payload
