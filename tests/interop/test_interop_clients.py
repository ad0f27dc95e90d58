"""Our threaded and asyncio clients against peer servers: Node ws and websockets (asyncio)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from interop_support import CASES, Case, Client, Ctx, ServerRegistry

pytestmark = pytest.mark.interop

PEERS = ["node_ws", "websockets"]
CLIENTS = ["threaded", "asyncio"]


@pytest.fixture(scope="module", params=CLIENTS)
def client(request: pytest.FixtureRequest, standin_server: bool) -> Iterator[Client]:
    # With --standin-server, websockets' client plays ours too: a check of the tests themselves.
    c = Client("websockets" if standin_server else request.param)
    yield c
    c.close()


@pytest.mark.parametrize("compression", [True, False], ids=["deflate", "plain"])
@pytest.mark.parametrize("peer", PEERS)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_our_client(
    client: Client, peer: str, compression: bool, case: Case, servers: ServerRegistry
) -> None:
    server = servers.get(peer, compression)
    case.fn(Ctx(client, server.url, compression))
