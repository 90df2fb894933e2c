"""Issue 12: the HTTP API fuzzed from its own OpenAPI description (schemathesis) against a real node: every
operation, valid and invalid inputs, and no 500, no undocumented status or content type, no crash, no hang.

Bounded for `make test` (MURMUR_FUZZ_EXAMPLES per operation, default 60, well under a minute in all);
scripts/fuzz_http.py runs it longer and reports the figures."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from node.http.openapi import build_openapi
from tests.support.procs import NodeProc, write_config

EXAMPLES = int(os.environ.get("MURMUR_FUZZ_EXAMPLES", "60"))
CALL_TIMEOUT_S = 15.0  # no request may hang: the node's own request timeout is 30 s, these are tiny
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
@schemathesis.serializer("application/x-ndjson")
def _ndjson(ctx: object, value: object) -> bytes:
    """The bulk body is NDJSON text: generated strings go as they are (most lines invalid: 400 each, alone)."""
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8", "surrogatepass")


schema = schemathesis.openapi.from_dict(build_openapi())
schema.config.generation.update(modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE])
RUN = {"cases": 0, "started": 0.0}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProc]:
    root: Path = tmp_path_factory.mktemp("fuzz")
    nd = NodeProc(write_config(root, ["n1"]), "n1").start()
    RUN["started"] = time.monotonic()
    try:
        yield nd
        assert nd.alive(), f"the node died under the fuzzer:\n{nd.log_tail()}"
        assert httpx.get(nd.url + "/health", timeout=10).status_code == 200
        print(f"\nfuzz_http: {RUN['cases']} cases over {len(list(schema.get_all_operations()))} operations "
              f"in {time.monotonic() - RUN['started']:.1f} s, no failure")
    finally:
        nd.stop()


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_the_api_holds_to_its_own_description(case: schemathesis.Case, node: NodeProc) -> None:
    RUN["cases"] += 1
    response = case.call(base_url=node.url, timeout=CALL_TIMEOUT_S)
    case.validate_response(response, checks=CHECKS)
