"""The thin I/O layer both ends share: read one message at a time from a trio stream, write frames from many tasks
through one writer task (trio streams allow one sender at a time; the writer also coalesces frames into few sends).

No protocol decisions here: those are in handshake.py, server.py and client.py.
"""

from __future__ import annotations

import trio

from node.transport.errors import ConnectionClosed
from node.transport.messages import (
    FRAME_BYTES_MAX,
    FRAME_TAG_BYTES,
    HANDSHAKE_FRAME_BYTES_MAX,
    LENGTH_BYTES,
    FrameDecoder,
    Message,
    decode,
    encode_frame,
)
from node.transport.session import Session

RECEIVE_BYTES = 256 * 1024  # one socket read at most
WRITE_BATCH_BYTES = 256 * 1024  # frames queued together are joined into one send up to about this size


class Wire:
    """Until `secure()`, frames are bounded by HANDSHAKE_FRAME_BYTES_MAX and read in pieces no larger: an
    unauthenticated peer makes us hold about 1 KiB, whatever it sends. After, frames carry the session's MAC."""

    def __init__(self, stream: trio.abc.Stream, frame_bytes_max: int = HANDSHAKE_FRAME_BYTES_MAX) -> None:
        self.stream = stream
        self._frames = FrameDecoder(frame_bytes_max)
        self._read_bytes = min(RECEIVE_BYTES, LENGTH_BYTES + frame_bytes_max)
        self.session: Session | None = None

    def secure(self, session: Session, frame_bytes_max: int = FRAME_BYTES_MAX) -> None:
        """The handshake is done: raise the frame limit and check the MAC of every frame from now on."""
        self.session = session
        self._frames = FrameDecoder(frame_bytes_max + FRAME_TAG_BYTES, self._frames)
        self._read_bytes = RECEIVE_BYTES

    async def receive(self) -> Message:
        """The next message. Raises ConnectionClosed at EOF, ProtocolError on bytes that are not a message (or
        whose MAC is wrong: checked before decoding)."""
        while True:
            payload = self._frames.next_frame()
            if payload is not None:
                return decode(payload if self.session is None else self.session.open(payload))
            data = await self.stream.receive_some(self._read_bytes)
            if not data:
                raise ConnectionClosed("the peer closed the connection")
            self._frames.feed(data)

    def seal(self, frame: bytearray) -> bytearray:
        """An encoded frame as it goes on the wire: with its MAC once secured. Call in send order."""
        return frame if self.session is None else self.session.seal(frame)

    async def send(self, msg: Message) -> None:
        """Send directly; only while no write_loop runs on this stream (the handshake)."""
        await self.stream.send_all(self.seal(encode_frame(msg)))


async def write_loop(wire: Wire, frames: trio.MemoryReceiveChannel[bytearray]) -> None:
    """Send every frame put into `frames`, in order (sealed in that order), until the channel ends. Stream errors
    propagate."""
    stream = wire.stream
    async with frames:
        async for first in frames:
            # The frames queued meanwhile go in the same send (under load this task wakes a batch of runnable
            # tasks after the first frame was queued, so one send carries many). It used to wait one more batch
            # for more frames: under load a batch is several ms, and a search's call paid it at both ends.
            batch = [wire.seal(first)]
            size = len(first)
            while size < WRITE_BATCH_BYTES:
                try:
                    frame = frames.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
                batch.append(wire.seal(frame))
                size += len(frame)
            await stream.send_all(batch[0] if len(batch) == 1 else b"".join(batch))
