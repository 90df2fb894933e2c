"""Optional TLS on the HTTP port ([http] tls_cert_file / tls_key_file): a self-signed CA and server certificate
made here (trustme), the real server with make_ssl_context, a client that verifies against that CA."""

from __future__ import annotations

import ssl
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio
import trustme
from httpkit import FakeCoordinator

from node.config import HttpConfig, parse_config
from node.http.api import make_handler
from node.http.server import make_ssl_context, serve_http
from node.metrics import HttpMetrics


def test_https_with_a_self_signed_certificate(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file, ca_file = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    ca.cert_pem.write_to_path(str(ca_file))
    conf = parse_config(
        {"nodes": [{"name": "n1"}], "cluster": {"replication_factor": 1, "write_quorum": 1, "read_quorum": 1},
         "http": {"tls_cert_file": "cert.pem", "tls_key_file": "key.pem"}},
        str(tmp_path / "cluster.toml"),
    )
    assert conf.url("n1").startswith("https://")
    ctx = make_ssl_context(str(conf.file("cert.pem")), str(conf.file("key.pem")))
    cfg = HttpConfig()
    handler = make_handler(FakeCoordinator(), HttpMetrics(), cfg, "n1")

    async def main() -> None:
        async with trio.open_nursery() as n:
            port = await n.start(partial(serve_http, handler, "127.0.0.1", 0, cfg, ssl_context=ctx))
            verify = ssl.create_default_context(cafile=str(ca_file))

            def client_calls() -> None:
                with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=verify, timeout=10) as c:
                    assert c.get("/health").json()["status"] == "ok"
                    r = c.post("/tweets", json={"text": "over tls", "user": "u"})
                    assert r.status_code == 201, r.text
                    assert c.get(f"/tweets/{r.json()['id']}").json()["text"] == "over tls"
                with pytest.raises(httpx.HTTPError):  # plain HTTP to the TLS port gets no answer
                    httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
                with pytest.raises(httpx.ConnectError):  # and a client that does not trust the CA refuses
                    httpx.get(f"https://127.0.0.1:{port}/health", timeout=5)

            await trio.to_thread.run_sync(client_calls)
            n.cancel_scope.cancel()

    trio.run(main)
