"""Peer clients (Node ws, websockets' asyncio client) against our threaded and asyncio servers,
each started as `python -m transports serve --transport T --host 127.0.0.1 --port P
--max-size 16777216 [--no-compression]`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from interop_support import (
    CASES,
    Case,
    Client,
    Ctx,
    ServerRegistry,
    node_case_names,
    run_node_client,
)

pytestmark = pytest.mark.interop

TRANSPORTS = ["threaded", "asyncio"]
COMPRESSION = pytest.mark.parametrize("compression", [True, False], ids=["deflate", "plain"])
NODE_RESULTS: dict[tuple[str, bool], dict[str, Any]] = {}


@pytest.fixture(scope="module")
def websockets_client() -> Iterator[Client]:
    c = Client("websockets")
    yield c
    c.close()


@pytest.mark.timeout(600)
@COMPRESSION
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("name", node_case_names())
def test_node_ws_client(
    transport: str, compression: bool, name: str, servers: ServerRegistry
) -> None:
    key = (transport, compression)
    if key not in NODE_RESULTS:
        # One run of ws_client.js per server covers every case; later tests read its results.
        try:
            server = servers.get(transport, compression)
            NODE_RESULTS[key] = run_node_client(server.url, compression)
        except Exception as exc:
            NODE_RESULTS[key] = {"__error__": f"{type(exc).__name__}: {exc}"}
    if "__error__" in NODE_RESULTS[key]:
        pytest.fail(f"ws_client.js did not run: {NODE_RESULTS[key]['__error__']}")
    result = NODE_RESULTS[key].get(name)
    assert result is not None, f"no result for {name}"
    assert result["ok"], f"{name}: {result['error']}"


@COMPRESSION
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("case", [c for c in CASES if not c.commands],
                         ids=[c.name for c in CASES if not c.commands])
def test_websockets_client(
    websockets_client: Client, transport: str, compression: bool, case: Case,
    servers: ServerRegistry,
) -> None:
    server = servers.get(transport, compression)
    case.fn(Ctx(websockets_client, server.url, compression))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_healthz_and_demo_page(transport: str, servers: ServerRegistry) -> None:
    import urllib.request

    server = servers.get(transport, True)
    base = f"http://127.0.0.1:{server.port}"
    with urllib.request.urlopen(base + "/healthz", timeout=10) as r:
        assert r.status == 200
        assert r.read().strip() == b"ok"
    with urllib.request.urlopen(base + "/", timeout=10) as r:
        assert r.status == 200
        assert "text/html" in r.headers.get("Content-Type", "")
        assert b'id="connect"' in r.read()
