"""Wire messages of the RPC transport, their one codec (msgpack via msgspec) and the framing
(4-byte big-endian length, then the payload). Pure: no socket, no clock.

Tags and field order are protocol: append new messages with new tags and new fields last with defaults; never
renumber, reorder or reuse. A frame longer than the limit is refused from its length prefix, before any buffer for
it exists: HANDSHAKE_FRAME_BYTES_MAX until the peer has proven the secret, FRAME_BYTES_MAX (+ the MAC) after.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from node.transport.errors import FrameTooLarge, ProtocolError

PROTOCOL_VERSION = 2  # 2: frames after the handshake carry a MAC (session.py); a version-1 peer is refused
FRAME_BYTES_MAX = 32 * 1024 * 1024  # one frame's payload at most, either direction
HANDSHAKE_FRAME_BYTES_MAX = 1024  # one frame before the handshake completes (the largest, Hello, is ~300 bytes)
FRAME_TAG_BYTES = 16  # after the handshake each frame ends with a keyed BLAKE2b-128 of its payload (session.py)
LENGTH_BYTES = 4
NONCE_BYTES = 16  # the shell draws nonces of this size from `secrets`
MAC_BYTES = 32  # HMAC-SHA256

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]  # a node name
Nonce = Annotated[bytes, msgspec.Meta(min_length=NONCE_BYTES, max_length=NONCE_BYTES)]
Mac = Annotated[bytes, msgspec.Meta(min_length=MAC_BYTES, max_length=MAC_BYTES)]
ReqId = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


class _Msg(msgspec.Struct, frozen=True, array_like=True, gc=False):
    pass


class Hello(_Msg, frozen=True, tag=1):
    """client -> server, first: who I am and my nonce."""

    node: Name
    nonce: Nonce
    version: int = PROTOCOL_VERSION


class Challenge(_Msg, frozen=True, tag=2):
    """server -> client: who I am and my nonce (no MAC yet: the client proves itself first)."""

    node: Name
    nonce: Nonce
    version: int = PROTOCOL_VERSION


class Proof(_Msg, frozen=True, tag=3):
    """client -> server: HMAC(secret, "client", both nonces, both names)."""

    mac: Mac


class Welcome(_Msg, frozen=True, tag=4):
    """server -> client, after a good Proof: HMAC(secret, "server", both nonces, both names)."""

    mac: Mac


class Request(_Msg, frozen=True, tag=5):
    req_id: ReqId  # unique among the connection's calls in flight; echoed by the Response
    method: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    body: bytes
    deadline_ms: Annotated[int, msgspec.Meta(ge=0)]  # time left to the caller, relative (clocks differ)
    request_id: Annotated[str, msgspec.Meta(max_length=64)] | None = None  # the HTTP request it serves (logs)


class Response(_Msg, frozen=True, tag=6):
    req_id: ReqId
    body: bytes | None  # None exactly when error_code is set
    error_code: str | None = None  # a MurmurError code ("not_found", "internal", ...)
    error_message: str | None = None
    error_field: str | None = None


Message = Hello | Challenge | Proof | Welcome | Request | Response

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Message)


def encode(msg: Message) -> bytes:
    return _encoder.encode(msg)


def decode(payload: bytes) -> Message:
    try:
        return _decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise ProtocolError(f"undecodable message: {e}") from None


def encode_frame(msg: Message) -> bytearray:
    """The frame of `msg`: length prefix + payload. Raises FrameTooLarge (before sending anything) if too big."""
    buf = bytearray(LENGTH_BYTES)
    _encoder.encode_into(msg, buf, LENGTH_BYTES)
    n = len(buf) - LENGTH_BYTES
    if n > FRAME_BYTES_MAX:
        raise FrameTooLarge(f"a {n}-byte frame exceeds FRAME_BYTES_MAX={FRAME_BYTES_MAX}")
    buf[:LENGTH_BYTES] = n.to_bytes(LENGTH_BYTES, "big")
    return buf


class FrameDecoder:
    """Cuts a byte stream into frame payloads. Holds at most one frame plus one fed chunk: feed() only after
    next_frame() returned None."""

    def __init__(self, frame_bytes_max: int = FRAME_BYTES_MAX, carry: FrameDecoder | None = None) -> None:
        self._buf: bytearray = bytearray() if carry is None else carry._buf[carry._pos :]  # read, not yet parsed
        self._pos: int = 0  # start of the unread part of _buf (compacted lazily: cutting the front is O(n))
        self._max = frame_bytes_max

    def feed(self, data: bytes | bytearray) -> None:
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def next_frame(self) -> bytes | None:
        """The next complete payload, or None if more bytes are needed. Raises FrameTooLarge from the prefix."""
        start = self._pos
        if len(self._buf) - start < LENGTH_BYTES:
            return None
        n = int.from_bytes(self._buf[start : start + LENGTH_BYTES], "big")
        if n > self._max:
            raise FrameTooLarge(f"a {n}-byte frame exceeds the limit of {self._max}")
        end = start + LENGTH_BYTES + n
        if len(self._buf) < end:
            return None
        payload = bytes(self._buf[start + LENGTH_BYTES : end])
        self._pos = end
        return payload

    def buffered_bytes(self) -> int:
        return len(self._buf) - self._pos
