"""The thin I/O layer both ends share: read one message at a time from a trio stream, write frames from many tasks
through one writer task (trio streams allow one sender at a time; the writer also coalesces frames into few sends).

No protocol decisions here: those are in handshake.py, server.py and client.py.
"""

from __future__ import annotations

import trio

from node.transport.errors import ConnectionClosed
from node.transport.messages import FRAME_BYTES_MAX, FrameDecoder, Message, decode, encode_frame

RECEIVE_BYTES = 256 * 1024  # one socket read at most
WRITE_BATCH_BYTES = 256 * 1024  # frames queued together are joined into one send up to about this size


class Wire:
    def __init__(self, stream: trio.abc.Stream, frame_bytes_max: int = FRAME_BYTES_MAX) -> None:
        self.stream = stream
        self._frames = FrameDecoder(frame_bytes_max)

    async def receive(self) -> Message:
        """The next message. Raises ConnectionClosed at EOF, ProtocolError on bytes that are not a message."""
        while True:
            payload = self._frames.next_frame()
            if payload is not None:
                return decode(payload)
            data = await self.stream.receive_some(RECEIVE_BYTES)
            if not data:
                raise ConnectionClosed("the peer closed the connection")
            self._frames.feed(data)

    async def send(self, msg: Message) -> None:
        """Send directly; only while no write_loop runs on this stream (the handshake)."""
        await self.stream.send_all(encode_frame(msg))


async def write_loop(stream: trio.abc.Stream, frames: trio.MemoryReceiveChannel[bytearray]) -> None:
    """Send every frame put into `frames`, in order, until the channel ends. Stream errors propagate."""
    async with frames:
        async for first in frames:
            # Let the other runnable tasks queue their frames first: under load one send then carries many.
            await trio.lowlevel.cancel_shielded_checkpoint()
            batch = [first]
            size = len(first)
            while size < WRITE_BATCH_BYTES:
                try:
                    frame = frames.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
                batch.append(frame)
                size += len(frame)
            await stream.send_all(first if len(batch) == 1 else b"".join(batch))
