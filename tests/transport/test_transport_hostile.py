"""Issue 12, findings 4 and 8: strangers on the RPC port, and an attacker on the path.
Before the handshake at most HANDSHAKE_FRAME_BYTES_MAX per frame is accepted and unauthenticated connections have
their own slots; after it every frame carries a MAC under per-connection session keys, checked before decoding."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
import trio
from test_transport_rpc import SECRET, Echo, _eof_within, _server, run

from node.transport.client import open_peer_pool
from node.transport.errors import ProtocolError
from node.transport.handshake import ClientHandshake, ServerHandshake, State
from node.transport.messages import Request, encode, encode_frame
from node.transport.server import CONNECTIONS_MAX
from node.transport.session import Session
from node.transport.wire import Wire
from tests.support.procs import NodeProc, write_config

MIB = 1024 * 1024


def established(secret: bytes = b"s" * 32, cn: bytes = b"c" * 16, sn: bytes = b"n" * 16) -> tuple[Session, Session]:
    c, s = ClientHandshake(secret, "a", cn), ServerHandshake(secret, "b", sn)
    welcome = s.on_message(c.on_message(s.on_message(c.start())))  # type: ignore[arg-type]
    c.on_message(welcome)
    assert c.state is s.state is State.ESTABLISHED
    return c.session(), s.session()


def payload(frame: bytearray) -> bytes:
    return bytes(frame[4:])


def test_session_frames_round_trip_and_any_tampering_is_refused() -> None:
    client, server = established()
    frames = [client.seal(encode_frame(Request(i, "m", b"x" * i, 10))) for i in range(3)]
    assert [server.open(payload(f)) for f in frames] == [encode(Request(i, "m", b"x" * i, 10)) for i in range(3)]
    client, server = established()
    _f1, f2 = (payload(client.seal(encode_frame(Request(i, "m", b"", 10)))) for i in (1, 2))
    with pytest.raises(ProtocolError):
        server.open(f2)  # reordered (or f1 dropped)
    client, server = established()
    f1 = payload(client.seal(encode_frame(Request(1, "m", b"abc", 10))))
    with pytest.raises(ProtocolError):
        server.open(f1[:-20] + bytes([f1[-20] ^ 1]) + f1[-19:])  # one bit of the payload
    with pytest.raises(ProtocolError):
        server.open(b"short")
    client, server = established()
    back = payload(server.seal(encode_frame(Request(1, "m", b"abc", 10))))
    with pytest.raises(ProtocolError):
        server.open(back)  # its own frame reflected back: the other direction's key
    _other_client, other_server = established(sn=b"m" * 16)  # another connection's keys
    with pytest.raises(ProtocolError):
        other_server.open(payload(client.seal(encode_frame(Request(1, "m", b"", 10)))))


def test_a_frame_without_the_session_mac_closes_the_connection_and_runs_nothing() -> None:
    """Finding 8: what an on-path attacker could inject into a live, authenticated connection."""

    async def t() -> None:
        e = Echo()
        async with trio.open_nursery() as n:
            port = await n.start(_server, trio.CancelScope(), e.dispatch())
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                wire = Wire(stream)
                hs = ClientHandshake(SECRET, "cli", b"n" * 16)
                await wire.send(hs.start())
                while hs.state is not State.ESTABLISHED:
                    reply = hs.on_message(await wire.receive())
                    if reply is not None:
                        await wire.send(reply)
                await stream.send_all(encode_frame(Request(1, "echo", b"injected", 1000)))  # no MAC
                assert await _eof_within(stream, 2.0)
            assert e.calls == []
            async with open_peer_pool(SECRET, "cli") as pool:
                assert await pool.call(("127.0.0.1", port), "echo", b"ok", 2.0) == b"ok"
            n.cancel_scope.cancel()

    run(t)


def test_a_big_frame_before_the_handshake_is_refused_from_its_prefix() -> None:
    async def t() -> None:
        e = Echo()
        async with trio.open_nursery() as n:
            port = await n.start(_server, trio.CancelScope(), e.dispatch())
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                await stream.send_all((30 * MIB).to_bytes(4, "big") + b"\x00" * 4096)  # and the rest never comes
                assert await _eof_within(stream, 1.0)  # not held for the handshake timeout, buffering
            n.cancel_scope.cancel()

    run(t)


def test_silent_connections_do_not_keep_a_peer_from_connecting() -> None:
    async def t() -> None:
        e = Echo()
        async with trio.open_nursery() as n:
            port = await n.start(_server, trio.CancelScope(), e.dispatch())
            silent = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(CONNECTIONS_MAX)]
            await trio.sleep(0.2)
            async with open_peer_pool(SECRET, "peer") as pool:
                # within the client's 2 s connect timeout, while every silent one is still open or recycled
                assert await pool.call(("127.0.0.1", port), "echo", b"through", 2.0) == b"through"
            for s in silent:
                await s.aclose()
            n.cancel_scope.cancel()

    run(t)


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_8_unauthenticated_30_mib_frames_do_not_grow_a_node(tmp_path: Path) -> None:
    """Before: the node buffered each frame whole (8 x 30 MiB ~ 250 MiB). The bound of the issue: < 40 MiB."""
    conf = write_config(tmp_path, ["n1"])
    nd = NodeProc(conf, "n1").start()
    try:
        assert nd.proc is not None
        from node.config import load_config

        rpc = load_config(conf).node("n1").gossip_port
        time.sleep(0.5)
        base = _rss_kib(nd.proc.pid)
        peak = base


        def flood() -> None:
            try:
                with socket.create_connection(("127.0.0.1", rpc), timeout=10) as s:
                    s.sendall((30 * MIB).to_bytes(4, "big") + b"\x00" * (30 * MIB))
            except OSError:
                pass  # the node closed on us: the point

        threads = [threading.Thread(target=flood) for _ in range(8)]
        for th in threads:
            th.start()
        deadline = time.monotonic() + 30
        while any(th.is_alive() for th in threads) and time.monotonic() < deadline:
            peak = max(peak, _rss_kib(nd.proc.pid))
            time.sleep(0.02)

        for th in threads:
            th.join(10)
        peak = max(peak, _rss_kib(nd.proc.pid))
        assert (peak - base) < 40 * 1024, f"RSS grew {(peak - base) / 1024:.1f} MiB"
        import httpx

        assert httpx.get(nd.url + "/health", timeout=10).status_code == 200
    finally:
        nd.stop()
