"""The two transports against each other: threaded client <-> asyncio server and back."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from transports import asyncio as aws
from transports import threaded as tws

MESSAGES: list[Any] = ["hello", "é" * 1000, b"", b"\x00\xff" * 40000, "x" * (2**20)]


def test_threaded_client_against_asyncio_server() -> None:
    ready = threading.Event()
    stop: dict[str, Any] = {}

    async def echo(ws: Any) -> None:
        async for message in ws:
            await ws.send(message)

    async def main() -> None:
        async with aws.serve(echo, "127.0.0.1", 0, max_size=2**21) as server:
            stop["port"] = server.port
            stop["event"] = asyncio.Event()
            stop["loop"] = asyncio.get_running_loop()
            ready.set()
            await asyncio.wait_for(stop["event"].wait(), 30)

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        with tws.connect(f"ws://127.0.0.1:{stop['port']}/", max_size=2**21) as ws:
            for message in MESSAGES:
                ws.send(message)
                assert ws.recv(timeout=10) == message
            ws.send(["frag", "ment", "ed"])
            assert ws.recv(timeout=10) == "fragmented"
            assert ws.ping().wait(5) >= 0
        assert ws.close_code == 1000
    finally:
        stop["loop"].call_soon_threadsafe(stop["event"].set)
        thread.join(10)


def test_asyncio_client_against_threaded_server() -> None:
    def echo(ws: Any) -> None:
        for message in ws:
            ws.send(message)

    async def main(port: int) -> int:
        async with aws.connect(f"ws://127.0.0.1:{port}/", max_size=2**21) as ws:
            for message in MESSAGES:
                await ws.send(message)
                assert await asyncio.wait_for(ws.recv(), 10) == message
            await ws.send([b"frag", b"ment"])
            assert await asyncio.wait_for(ws.recv(), 10) == b"fragment"
            latency = await asyncio.wait_for(await ws.ping(), 5)
            assert latency >= 0
        return int(ws.close_code)

    with tws.serve(echo, "127.0.0.1", 0, max_size=2**21) as server:
        assert asyncio.run(main(server.port)) == 1000
