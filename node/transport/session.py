"""Frame integrity after the handshake: both ends derive two session keys (one per direction) from the secret and
the handshake's nonces and names, then every frame carries a keyed BLAKE2b-128 tag over (its sequence number in that
direction, its payload). The receiver checks the tag before decoding; a bad tag is a ProtocolError that closes the
connection. So an on-path attacker can neither inject, alter, reorder, replay nor reflect a frame. Pure: no I/O.

Not encryption: frames stay readable on the wire (TLS or a private network is the answer to that).
"""

from __future__ import annotations

import hashlib
import hmac

import msgspec

from node.transport.errors import ProtocolError
from node.transport.messages import FRAME_TAG_BYTES, LENGTH_BYTES, PROTOCOL_VERSION

KEY_BYTES = 32


def session_keys(
    secret: bytes, client_nonce: bytes, server_nonce: bytes, client: str, server: str
) -> tuple[bytes, bytes]:
    """(client-to-server key, server-to-client key): fresh per connection, since both nonces are."""

    def key(direction: str) -> bytes:
        data = msgspec.msgpack.encode(
            ("murmur-rpc-session", PROTOCOL_VERSION, direction, client_nonce, server_nonce, client, server)
        )
        return hmac.new(secret, data, hashlib.sha256).digest()

    return key("client->server"), key("server->client")


class Session:
    """One connection's tags: `seal` outgoing frames in send order, `open` incoming payloads in receive order."""

    def __init__(self, send_key: bytes, recv_key: bytes) -> None:
        assert len(send_key) == KEY_BYTES and len(recv_key) == KEY_BYTES
        self._send_key, self._recv_key = send_key, recv_key
        self._sent = 0
        self._received = 0

    def _tag(self, key: bytes, seq: int, payload: memoryview | bytes) -> bytes:
        h = hashlib.blake2b(seq.to_bytes(8, "big"), key=key, digest_size=FRAME_TAG_BYTES)
        h.update(payload)
        return h.digest()

    def seal(self, frame: bytearray) -> bytearray:
        """A frame from encode_frame (length prefix + payload) -> the same frame with its tag, prefix adjusted."""
        with memoryview(frame) as view:
            tag = self._tag(self._send_key, self._sent, view[LENGTH_BYTES:])
        self._sent += 1
        frame += tag
        frame[:LENGTH_BYTES] = (len(frame) - LENGTH_BYTES).to_bytes(LENGTH_BYTES, "big")
        return frame

    def open(self, data: bytes) -> bytes:
        """A received frame's payload+tag -> the payload. Raises ProtocolError on a missing or wrong tag."""
        if len(data) < FRAME_TAG_BYTES:
            raise ProtocolError("a frame without its MAC")
        with memoryview(data) as view:
            payload, tag = view[:-FRAME_TAG_BYTES], view[-FRAME_TAG_BYTES:]
            want = self._tag(self._recv_key, self._received, payload)
            if not hmac.compare_digest(want, tag):
                raise ProtocolError("a frame with a bad MAC (altered, injected, replayed or reordered)")
            out = bytes(payload)
        self._received += 1
        return out
