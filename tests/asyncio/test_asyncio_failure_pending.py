"""A protocol error right behind valid messages: the answers go out before the close frame.

What the Autobahn cases 3.2-3.4, 4.1.3-4.2.5 and 5.15 check: the peer sends a
message and, in the same write, a bad frame (here RSV2 set); the echo of the
message must come before our close frame (1002), not be refused.
"""

from __future__ import annotations

import asyncio
import os
import struct
from typing import Any, List, Tuple

import pytest
from asyncio_support import echo, upgrade_head

import wscore
from transports.asyncio import connect, serve


def make_frame(opcode: int, payload: bytes = b"", rsv: int = 0, masked: bool = True) -> bytes:
    """A small frame (payload up to 125 bytes), masked as a client sends it."""
    assert len(payload) <= 125
    head = bytes([0x80 | (rsv << 4) | opcode, (0x80 if masked else 0) | len(payload)])
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


async def read_frame(reader: asyncio.StreamReader) -> Tuple[int, bytes]:
    """The next frame's opcode and payload (unmasked if it is masked)."""
    first, second = await reader.readexactly(2)
    length = second & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", await reader.readexactly(8))
    key = await reader.readexactly(4) if second & 0x80 else None
    payload = await reader.readexactly(length)
    if key is not None:
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return first & 0x0F, payload


async def raw_client(port: int) -> Any:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(upgrade_head().encode())
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


def close_code(payload: bytes) -> int:
    return int(struct.unpack("!H", payload[:2])[0])


BAD = make_frame(0x1, b"bad", rsv=2)  # RSV2: no extension defines it


@pytest.mark.parametrize("compression", ["deflate", None])
def test_server_echoes_before_failing(run: Any, compression: Any) -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, compression=compression) as server:
            reader, writer = await raw_client(server.port)
            # One write: a message, the bad frame, then a ping that must not be answered.
            writer.write(make_frame(0x1, b"Hello") + BAD + make_frame(0x9, b"p"))
            assert await read_frame(reader) == (0x1, b"Hello")
            opcode, payload = await read_frame(reader)
            assert opcode == 0x8 and close_code(payload) == 1002
            assert await asyncio.wait_for(reader.read(), 5) == b""  # no pong, then EOF
            writer.close()

    run(main())


def test_bad_frame_in_a_later_read_while_the_handler_is_busy(run: Any) -> None:
    async def slow_echo(ws: Any) -> None:
        async for message in ws:
            await asyncio.sleep(0.3)  # the bad frame arrives meanwhile (Autobahn 3.4)
            await ws.send(message)

    async def main() -> None:
        async with serve(slow_echo, "127.0.0.1", 0) as server:
            reader, writer = await raw_client(server.port)
            writer.write(make_frame(0x1, b"Hello"))
            await asyncio.sleep(0.1)
            writer.write(BAD)
            assert await read_frame(reader) == (0x1, b"Hello")
            opcode, payload = await read_frame(reader)
            assert opcode == 0x8 and close_code(payload) == 1002
            writer.close()

    run(main())


def test_handler_that_never_receives_gets_the_failure_after_close_timeout(run: Any) -> None:
    outcome: List[Any] = []

    async def main() -> None:
        go = asyncio.Event()

        async def producer(ws: Any) -> None:
            await go.wait()
            await ws.send("late")  # still OPEN: the peer's error is held back
            await ws.wait_closed()
            outcome.append(ws.close_code)

        async with serve(producer, "127.0.0.1", 0, compression=None, close_timeout=1.0) as server:
            reader, writer = await raw_client(server.port)
            writer.write(make_frame(0x1, b"Hello") + BAD)
            loop = asyncio.get_running_loop()
            start = loop.time()
            await asyncio.sleep(0.2)  # the server has read the bad frame by now
            go.set()
            assert await read_frame(reader) == (0x1, b"late")
            opcode, payload = await read_frame(reader)
            assert opcode == 0x8 and close_code(payload) == 1002
            assert loop.time() - start < 4  # close_timeout bounds it
            writer.close()
            for _ in range(200):
                if outcome:
                    break
                await asyncio.sleep(0.01)
        assert outcome == [1002]

    run(main())


def test_recv_waiting_fails_at_once(run: Any) -> None:
    result: List[Any] = []

    async def handler(ws: Any) -> None:
        try:
            await ws.recv()
        except wscore.ConnectionClosed as exc:
            result.append(exc)

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0, close_timeout=10) as server:
            reader, writer = await raw_client(server.port)
            await asyncio.sleep(0.05)  # the handler waits in recv()
            writer.write(BAD)
            opcode, payload = await asyncio.wait_for(read_frame(reader), 3)  # not 10 s
            assert opcode == 0x8 and close_code(payload) == 1002
            writer.close()
            for _ in range(200):
                if result:
                    break
                await asyncio.sleep(0.01)
        assert isinstance(result[0], wscore.ConnectionClosedError) and result[0].code == 1002

    run(main())


def test_client_echoes_before_failing(run: Any) -> None:
    received: List[Tuple[int, bytes]] = []

    async def raw_server(reader: Any, writer: Any) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        key = next(
            line.split(b":", 1)[1].strip().decode()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key")
        )
        writer.write(  # the 101, a message and the bad frame in one write
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: "
            + wscore.accept_token(key).encode()
            + b"\r\n\r\n"
            + make_frame(0x1, b"hello", masked=False)
            + make_frame(0x1, b"bad", rsv=2, masked=False)
        )
        received.append(await read_frame(reader))
        received.append(await read_frame(reader))
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(raw_server, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        ws = await connect(f"ws://127.0.0.1:{port}/", close_timeout=1)
        assert await ws.recv() == "hello"
        await ws.send("hello")
        with pytest.raises(wscore.ConnectionClosedError) as info:
            await ws.recv()
        assert info.value.code == 1002
        await ws.wait_closed()
        server.close()
        await server.wait_closed()
        assert received[0] == (0x1, b"hello")
        assert received[1][0] == 0x8 and close_code(received[1][1]) == 1002

    run(main())
