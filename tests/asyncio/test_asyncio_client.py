"""The asyncio client: reconnection, and interop with the websockets library both ways."""

from __future__ import annotations

import asyncio
from typing import Any, List

import pytest
from asyncio_support import echo, uri

import wscore
from transports.asyncio import connect, serve

websockets_server = pytest.importorskip("websockets.asyncio.server")
websockets_client = pytest.importorskip("websockets.asyncio.client")
websockets_exceptions = pytest.importorskip("websockets.exceptions")

FAST = {"backoff_initial": 0.05, "backoff_max": 0.2}


def test_reconnects_after_server_restart(run: Any) -> None:
    generation = 0

    async def greeter(ws: Any) -> None:
        await ws.send(f"generation {generation}")
        await ws.wait_closed()

    async def main() -> None:
        nonlocal generation
        server = await serve(greeter, "127.0.0.1", 0)
        port = server.port
        got: List[str] = []
        first = asyncio.Event()

        async def client() -> None:
            async for ws in connect(f"ws://127.0.0.1:{port}/", **FAST):
                async for message in ws:  # ends quietly on the server's 1001
                    got.append(message)
                    first.set()
                    if len(got) == 2:
                        await ws.close()
                        return

        task = asyncio.ensure_future(client())
        await first.wait()
        server.close()
        await server.wait_closed()
        await asyncio.sleep(0.3)  # the client meets refused connections meanwhile
        generation = 1
        server = await serve(greeter, "127.0.0.1", port)
        await asyncio.wait_for(task, 5)
        assert got == ["generation 0", "generation 1"]
        server.close()
        await server.wait_closed()

    run(main())


def test_reconnect_retries_5xx_and_stops_on_4xx(run: Any) -> None:
    answers = [(503, "busy"), (500, "oops"), None, (403, "go away")]

    def gate(connection: Any, request: Any) -> Any:
        return answers.pop(0)

    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, process_request=gate) as server:
            attempts = 0
            with pytest.raises(wscore.InvalidStatus) as info:
                async for ws in connect(uri(server), **FAST):
                    attempts += 1
                    await ws.send("ping")
                    assert await ws.recv() == "ping"
                    await ws.close()
            assert info.value.status == 403
            assert attempts == 1 and answers == []

    run(main())


def test_reconnect_stops_on_invalid_uri() -> None:
    with pytest.raises(wscore.InvalidURI):
        connect("wss://")


def test_our_client_websockets_server(run: Any) -> None:
    async def handler(ws: Any) -> None:
        async for message in ws:
            if message == "close please":
                await ws.close(4001, "as asked")
                return
            await ws.send(message)

    async def main() -> None:
        async with websockets_server.serve(handler, "127.0.0.1", 0, max_size=None) as server:
            port = server.sockets[0].getsockname()[1]
            async with connect(f"ws://127.0.0.1:{port}/", max_size=None) as ws:
                assert ws.core.extensions, "permessage-deflate should be negotiated"
                await ws.send("héllo")
                assert await ws.recv() == "héllo"
                blob = bytes(range(256)) * 8192
                await ws.send(blob)
                assert await ws.recv() == blob
                await ws.send(["frag", "ments"])
                assert await ws.recv() == "fragments"
                assert await asyncio.wait_for(await ws.ping(), 5) >= 0
                await ws.send("close please")
                with pytest.raises(wscore.ConnectionClosedError) as info:
                    await ws.recv()
                assert (info.value.code, info.value.reason) == (4001, "as asked")
            async with connect(f"ws://127.0.0.1:{port}/", compression=None) as ws:
                assert not ws.core.extensions
                await ws.send(b"plain")
                assert await ws.recv() == b"plain"
            assert ws.close_code == 1000

    run(main())


def test_websockets_client_our_server(run: Any) -> None:
    async def handler(ws: Any) -> None:
        async for message in ws:
            if message == "close please":
                await ws.close(4002, "bye")
                return
            await ws.send(message)

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0, max_size=None) as server:
            async with websockets_client.connect(uri(server), max_size=None) as ws:
                await ws.send("héllo")
                assert await ws.recv() == "héllo"
                blob = bytes(range(256)) * 8192
                await ws.send(blob)
                assert await ws.recv() == blob
                await ws.send(["frag", "ments"])
                assert await ws.recv() == "fragments"
                latency = await asyncio.wait_for(await ws.ping(), 5)
                assert latency >= 0
                await ws.send("close please")
                with pytest.raises(websockets_exceptions.ConnectionClosedError) as info:
                    await ws.recv()
                assert info.value.rcvd.code == 4002
            async with websockets_client.connect(uri(server), compression=None) as ws:
                await ws.send(b"plain")
                assert await ws.recv() == b"plain"
            # The websockets client closes first; our server answers and hangs up.
            assert ws.close_code == 1000

    run(main())


def test_reconnect_stops_on_certificate_error(run: Any, tls_contexts: Any) -> None:
    import ssl

    server_ctx, _ = tls_contexts

    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, ssl=server_ctx) as server:
            with pytest.raises(ssl.SSLCertVerificationError):
                async for _ in connect(uri(server, scheme="wss"), **FAST):
                    pass  # pragma: no cover - never connects

    run(main())
