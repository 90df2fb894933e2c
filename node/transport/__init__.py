"""Node-to-node RPC: authenticated, multiplexed, length-prefixed msgpack frames over persistent trio TCP streams.

Public surface: `serve_rpc` / `route` (server.py), `open_peer_pool` (client.py), the errors (errors.py).
Cores (messages, handshake, backoff) never touch a socket or a clock; server.py and client.py are the shells.
"""
