"""The authentication handshake of an RPC connection as two pure state machines; the shells only move messages.
No I/O, no clock, no randomness: nonces come in as arguments.

Rules (the only place they live):
  1. client -> Hello(c, Nc)                                     client: SENT_HELLO
  2. server -> Challenge(s, Ns)                                 server: SENT_CHALLENGE (no MAC yet)
  3. client -> Proof(HMAC(secret, "client", Nc, Ns, c, s))      client: SENT_PROOF
  4. server checks it (compare_digest): good -> Welcome(HMAC(secret, "server", Nc, Ns, c, s)), ESTABLISHED;
     bad -> FAILED, and the shell closes the connection without a word.
  5. client checks the server's MAC: good -> ESTABLISHED; bad -> FAILED.
  Any other message, in any state, is FAILED; FAILED accepts nothing. A version other than ours is FAILED.
  6. ESTABLISHED: both derive the session keys (session.py) from the secret, both nonces and both names; every
     frame after carries a MAC under them.
Why this order: the server proves itself only after the client did, so a peer without the secret learns nothing,
not even a MAC over a nonce it chose. Each MAC covers both fresh nonces (no replay), both names, and a role label
(a MAC cannot be reflected back as the other side's).
"""

from __future__ import annotations

import enum
import hashlib
import hmac

import msgspec

from node.transport.errors import HandshakeFailed
from node.transport.messages import NONCE_BYTES, PROTOCOL_VERSION, Challenge, Hello, Message, Proof, Welcome
from node.transport.session import Session, session_keys


class State(enum.Enum):
    START = "start"
    SENT_HELLO = "sent_hello"
    SENT_CHALLENGE = "sent_challenge"
    SENT_PROOF = "sent_proof"
    ESTABLISHED = "established"
    FAILED = "failed"


def mac(secret: bytes, role: str, client_nonce: bytes, server_nonce: bytes, client: str, server: str) -> bytes:
    # msgpack of a tuple is an unambiguous encoding of the parts (plain concatenation of names would not be)
    data = msgspec.msgpack.encode(("murmur-rpc", PROTOCOL_VERSION, role, client_nonce, server_nonce, client, server))
    return hmac.new(secret, data, hashlib.sha256).digest()


def _as_bytes(secret: str | bytes) -> bytes:
    b = secret.encode() if isinstance(secret, str) else secret
    assert b, "the cluster secret must not be empty"
    return b


class ClientHandshake:
    def __init__(self, secret: str | bytes, node: str, nonce: bytes) -> None:
        assert len(nonce) == NONCE_BYTES
        self._secret = _as_bytes(secret)
        self.node = node
        self._nonce = nonce
        self._server_nonce = b""
        self.peer: str | None = None  # the server's name, once it introduced itself
        self.state = State.START

    def start(self) -> Hello:
        assert self.state is State.START
        self.state = State.SENT_HELLO
        return Hello(self.node, self._nonce)

    def on_message(self, msg: Message) -> Proof | None:
        """Feed the server's next message; returns the message to send, if any. Raises HandshakeFailed."""
        if self.state is State.SENT_HELLO and isinstance(msg, Challenge) and msg.version == PROTOCOL_VERSION:
            self.peer, self._server_nonce = msg.node, msg.nonce
            self.state = State.SENT_PROOF
            return Proof(mac(self._secret, "client", self._nonce, msg.nonce, self.node, msg.node))
        if self.state is State.SENT_PROOF and isinstance(msg, Welcome):
            assert self.peer is not None
            want = mac(self._secret, "server", self._nonce, self._server_nonce, self.node, self.peer)
            if hmac.compare_digest(msg.mac, want):
                self.state = State.ESTABLISHED
                return None
            return self._fail("the server's proof is wrong: it does not hold our cluster secret")
        return self._fail(f"unexpected {type(msg).__name__} in state {self.state.value}")

    def _fail(self, why: str) -> Proof | None:
        self.state = State.FAILED
        raise HandshakeFailed(why)

    def session(self) -> Session:
        assert self.state is State.ESTABLISHED and self.peer is not None
        c2s, s2c = session_keys(self._secret, self._nonce, self._server_nonce, self.node, self.peer)
        return Session(send_key=c2s, recv_key=s2c)


class ServerHandshake:
    def __init__(self, secret: str | bytes, node: str, nonce: bytes) -> None:
        assert len(nonce) == NONCE_BYTES
        self._secret = _as_bytes(secret)
        self.node = node
        self._nonce = nonce
        self._client_nonce = b""
        self.peer: str | None = None  # the client's CLAIMED name; trust it only once ESTABLISHED
        self.state = State.START

    def on_message(self, msg: Message) -> Challenge | Welcome:
        """Feed the client's next message; returns the message to send. Raises HandshakeFailed."""
        if self.state is State.START and isinstance(msg, Hello) and msg.version == PROTOCOL_VERSION:
            self.peer, self._client_nonce = msg.node, msg.nonce
            self.state = State.SENT_CHALLENGE
            return Challenge(self.node, self._nonce)
        if self.state is State.SENT_CHALLENGE and isinstance(msg, Proof):
            assert self.peer is not None
            want = mac(self._secret, "client", self._client_nonce, self._nonce, self.peer, self.node)
            if hmac.compare_digest(msg.mac, want):
                self.state = State.ESTABLISHED
                return Welcome(mac(self._secret, "server", self._client_nonce, self._nonce, self.peer, self.node))
            self.state = State.FAILED
            raise HandshakeFailed(f"peer claiming to be {self.peer!r} sent a wrong proof (wrong cluster secret?)")
        why = f"unexpected {type(msg).__name__} in state {self.state.value}"
        self.state = State.FAILED
        raise HandshakeFailed(why)

    def session(self) -> Session:
        assert self.state is State.ESTABLISHED and self.peer is not None
        c2s, s2c = session_keys(self._secret, self._client_nonce, self._nonce, self.peer, self.node)
        return Session(send_key=s2c, recv_key=c2s)
