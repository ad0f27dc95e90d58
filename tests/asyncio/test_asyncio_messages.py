"""Messages over the asyncio transport: echo, fragments, control frames, closing, concurrency."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
from typing import Any, AsyncIterator, List

import pytest
from asyncio_support import echo, upgrade_head, uri

import wscore
from transports.asyncio import broadcast, connect, serve

MiB = 2**20


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, MiB, 16 * MiB])
def test_echo_sizes(run: Any, size: int) -> None:
    text = "é" * (size // 2)
    binary = os.urandom(size)
    options = {"max_size": None, "compression": None if size > MiB else "deflate"}

    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, **options) as server:
            async with connect(uri(server), **options) as ws:
                await ws.send(text)
                got = await ws.recv()
                assert isinstance(got, str) and got == text
                await ws.send(binary)
                got = await ws.recv()
                assert isinstance(got, bytes) and got == binary

    run(main(), timeout=30)


def test_max_size_closes_1009(run: Any) -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, max_size=1000) as server:
            async with connect(uri(server)) as ws:
                await ws.send(b"x" * 1001)
                with pytest.raises(wscore.ConnectionClosedError) as info:
                    await ws.recv()
                assert info.value.code == 1009

    run(main())


def test_fragmented_send_and_streaming(run: Any) -> None:
    received: List[Any] = []

    async def collect(ws: Any) -> None:
        while True:
            fragments = [fragment async for fragment in ws.recv_streaming()]
            received.append(fragments)
            empty = "" if isinstance(fragments[0], str) else b""
            await ws.send(empty.join(fragments))

    async def agen() -> AsyncIterator[bytes]:
        for part in (b"ab", b"cd", b"ef"):
            await asyncio.sleep(0)
            yield part

    async def main() -> None:
        async with serve(collect, "127.0.0.1", 0, streaming=True, compression=None) as server:
            async with connect(uri(server), compression=None) as ws:
                await ws.send(["hel", "lo", " ", "world"])
                assert await ws.recv() == "hello world"
                await ws.send(agen())
                assert await ws.recv() == b"abcdef"
                await ws.send(iter([b"one"]))
                assert await ws.recv() == b"one"
                await ws.send([])  # nothing at all
                # Without streaming, recv_streaming yields the whole message once.
                await ws.send(["x", "y"])
                assert [f async for f in ws.recv_streaming()] == ["xy"]
        assert received[:3] == [["hel", "lo", " ", "world"], [b"ab", b"cd", b"ef"], [b"one"]]

    run(main())


def test_streaming_recv_joins_fragments(run: Any) -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, streaming=True) as server:
            async with connect(uri(server), streaming=True) as ws:
                await ws.send(["a", "b", "c"])
                assert await ws.recv() == "abc"
                await ws.send(b"whole")
                assert await ws.recv() == b"whole"

    run(main())


def test_bad_fragments(run: Any) -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            async with connect(uri(server)) as ws:
                with pytest.raises(TypeError):
                    await ws.send([1, 2])
                with pytest.raises(TypeError):
                    await ws.send({"a": 1})
                # Mixing types mid-message breaks the message: the connection fails (1011).
                with pytest.raises(wscore.LocalProtocolError):
                    await ws.send(["text", b"bytes"])
                with pytest.raises(wscore.ConnectionClosedError):
                    await ws.recv()
            assert ws.close_code == 1011

    run(main())


def test_ping_latency(run: Any) -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            async with connect(uri(server)) as ws:
                assert ws.latency is None
                waiter = await ws.ping()
                latency = await asyncio.wait_for(waiter, 5)
                assert 0 <= latency < 1 and ws.latency == latency
                waiters = [await ws.ping(f"p{i}") for i in range(5)]
                assert len(await asyncio.gather(*waiters)) == 5
                await ws.pong(b"unsolicited")
                pending = await ws.ping(b"last")
            # A ping still unanswered when the connection closes fails.
            if not pending.done() or pending.exception() is not None:
                with pytest.raises(wscore.ConnectionClosed):
                    await pending
            with pytest.raises(wscore.ConnectionClosedOK):
                await ws.ping()

    run(main())


async def _raw_handshake(port: int) -> Any:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(upgrade_head().encode())
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    return reader, writer


async def _read_frame(reader: Any) -> Any:
    first, second = await reader.readexactly(2)
    length = second & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", await reader.readexactly(8))
    return first & 0x0F, await reader.readexactly(length)


def test_keepalive_closes_silent_peer(run: Any) -> None:
    result: List[Any] = []

    async def handler(ws: Any) -> None:
        try:
            await ws.recv()
        except wscore.ConnectionClosed as exc:
            result.append(exc)

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0, ping_interval=0.1, ping_timeout=0.1) as server:
            reader, writer = await _raw_handshake(server.port)
            opcode, payload = await _read_frame(reader)
            assert opcode == 0x9  # a ping, never answered
            opcode, payload = await _read_frame(reader)
            assert opcode == 0x8 and struct.unpack("!H", payload[:2])[0] == 1011
            assert await asyncio.wait_for(reader.read(), 3) == b""  # then the server hangs up
            writer.close()
            await asyncio.sleep(0.05)
        assert isinstance(result[0], wscore.ConnectionClosedError)
        assert result[0].code == 1011
        assert isinstance(result[0].error, wscore.KeepaliveTimeout)

    run(main())


def test_keepalive_keeps_live_peer(run: Any) -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, ping_interval=0.05, ping_timeout=0.5) as server:
            async with connect(uri(server), ping_interval=0.05, ping_timeout=0.5) as ws:
                await asyncio.sleep(0.4)
                await ws.send("still here")
                assert await ws.recv() == "still here"
                assert ws.latency > 0

    run(main())


def test_close_codes_both_ways(run: Any, caplog: pytest.LogCaptureFixture) -> None:
    seen: List[Any] = []

    async def handler(ws: Any) -> None:
        command = await ws.recv()
        if command == "close":
            await ws.close(4000, "bye")
        elif command == "raise":
            raise RuntimeError("handler bug")
        elif command == "return":
            return
        else:
            try:
                await ws.recv()
            except wscore.ConnectionClosed as exc:
                seen.append(exc)

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0) as server:
            async with connect(uri(server)) as ws:
                await ws.send("close")
                with pytest.raises(wscore.ConnectionClosedError) as info:
                    await ws.recv()
                assert (info.value.code, info.value.reason) == (4000, "bye")
            assert (ws.close_code, ws.close_reason) == (4000, "bye")
            async with connect(uri(server)) as ws:
                await ws.send("raise")
                with pytest.raises(wscore.ConnectionClosedError) as info:
                    await ws.recv()
                assert info.value.code == 1011
            async with connect(uri(server)) as ws:
                await ws.send("return")
                messages = [m async for m in ws]  # ends quietly on 1000
                assert messages == []
                assert ws.close_code == 1000
            ws = await connect(uri(server))
            await ws.send("wait")
            await ws.close(3001, "client leaves")
            assert ws.closed and ws.close_code == 3001
            with pytest.raises(wscore.ConnectionClosedError):
                await ws.send("too late")
            ws = await connect(uri(server))
            await ws.send("wait")
            await ws.close()
            with pytest.raises(wscore.ConnectionClosedOK):
                await ws.send("too late")
            with pytest.raises(wscore.ConnectionClosedOK):
                await ws.recv()
            with pytest.raises(wscore.LocalProtocolError):
                await ws.close(1006)
            await asyncio.sleep(0.05)
        assert [(e.code, e.reason, type(e)) for e in seen] == [
            (3001, "client leaves", wscore.ConnectionClosedError),
            (1000, "", wscore.ConnectionClosedOK),
        ]

    with caplog.at_level(logging.ERROR, logger="transports"):
        run(main())
    assert "connection handler failed" in caplog.text
    assert "handler bug" in caplog.text


def test_concurrent_senders_keep_messages_whole(run: Any) -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, compression=None) as server:
            async with connect(uri(server), compression=None, write_limit=1024) as ws:

                async def sender(tag: str) -> None:
                    for i in range(20):
                        if i % 2:
                            await ws.send(f"{tag}{i}:" + "x" * 3000)
                        else:
                            parts = [f"{tag}{i}:"] + ["y" * 1000] * 5
                            await ws.send(parts)

                tasks = [asyncio.ensure_future(sender(tag)) for tag in "abcdef"]
                got = [await ws.recv() for _ in range(6 * 20)]
                await asyncio.gather(*tasks)
                for message in got:
                    head, _, body = message.partition(":")
                    assert body in ("x" * 3000, "y" * 5000), head
                for tag in "abcdef":
                    order = [int(m.split(":")[0][1:]) for m in got if m[0] == tag]
                    assert order == list(range(20))

    run(main())


def test_concurrent_recv_raises(run: Any) -> None:
    async def handler(ws: Any) -> None:
        await ws.recv()

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0) as server:
            async with connect(uri(server)) as ws:
                first = asyncio.ensure_future(ws.recv())
                await asyncio.sleep(0.01)
                with pytest.raises(wscore.ConcurrencyError):
                    await ws.recv()
                with pytest.raises(wscore.ConcurrencyError):
                    async for _ in ws.recv_streaming():
                        pass
                await ws.send("done")
                with pytest.raises(wscore.ConnectionClosedOK):
                    await first

    run(main())


def test_many_clients_in_order(run: Any) -> None:
    clients, count = 200, 100

    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, compression=None) as server:

            async def client(n: int) -> None:
                async with connect(uri(server), compression=None) as ws:

                    async def reader() -> None:
                        for i in range(count):
                            assert await ws.recv() == f"{n}:{i}"

                    task = asyncio.ensure_future(reader())
                    for i in range(count):
                        await ws.send(f"{n}:{i}")
                    await task

            await asyncio.gather(*(client(n) for n in range(clients)))

    run(main(), timeout=60)


FLOOD = 40_000  # 40 MB: more than the kernel's socket buffers can hold


def test_reading_pauses_when_queue_is_full(run: Any) -> None:
    held: List[Any] = []
    release = None

    async def handler(ws: Any) -> None:
        held.append(ws)
        await release.wait()
        count = 0
        async for _ in ws:
            count += 1
            if count == FLOOD:
                await ws.send(f"got {count}")

    async def main() -> None:
        nonlocal release
        release = asyncio.Event()
        async with serve(handler, "127.0.0.1", 0, max_queue=8,
                         compression=None) as server:
            async with connect(uri(server), compression=None, write_limit=4096) as ws:
                payload = b"z" * 1000

                async def flood() -> None:
                    for _ in range(FLOOD):
                        await ws.send(payload)

                task = asyncio.ensure_future(flood())
                await asyncio.sleep(0.5)
                server_side = held[0]
                assert not task.done(), "send() should wait once buffers are full"
                assert not server_side.is_reading
                assert server_side._transport.is_reading() is False
                queued = len(server_side._queue)
                assert 8 <= queued <= 9, queued  # the core holds back what does not fit
                assert ws.write_buffer_size > 0
                release.set()
                await asyncio.wait_for(task, 10)
                assert await ws.recv() == f"got {FLOOD}"

    run(main(), timeout=20)


def test_graceful_shutdown_delivers_accepted_messages(run: Any) -> None:
    sent = 0

    async def handler(ws: Any) -> None:
        nonlocal sent
        try:
            while True:
                await ws.send(f"message {sent} " + "." * 4000)
                sent += 1
        except wscore.ConnectionClosed:
            pass

    async def main() -> None:
        server = await serve(handler, "127.0.0.1", 0, write_limit=2**14, compression=None)
        ws = await connect(uri(server))
        received = [await ws.recv()]
        server.close()
        with pytest.raises(wscore.ConnectionClosedOK) as info:
            while True:
                received.append(await ws.recv())
        assert info.value.code == 1001
        await server.wait_closed()
        assert received == [f"message {i} " + "." * 4000 for i in range(sent)]
        assert sent > 1
        with pytest.raises(OSError):
            await connect(uri(server))  # the port stays known; nothing listens there

    run(main())


def test_shutdown_aborts_stuck_handlers(run: Any) -> None:
    async def stuck(ws: Any) -> None:
        await asyncio.sleep(30)

    async def main() -> None:
        server = await serve(stuck, "127.0.0.1", 0, close_timeout=0.2)
        ws = await connect(uri(server))
        loop = asyncio.get_running_loop()
        start = loop.time()
        server.close()
        await server.wait_closed()
        assert loop.time() - start < 2
        await ws.wait_closed()
        assert ws.close_code in (1001, 1006)

    run(main())


def test_broadcast_skips_slow_clients(run: Any) -> None:
    connections: List[Any] = []
    ready = None

    async def handler(ws: Any) -> None:
        connections.append(ws)
        if len(connections) == 2:
            ready.set()
        await ws.wait_closed()

    async def main() -> None:
        nonlocal ready
        ready = asyncio.Event()
        async with serve(handler, "127.0.0.1", 0, write_limit=2**15, compression=None) as server:
            fast = await connect(uri(server), compression=None)
            slow = await connect(uri(server), compression=None, max_queue=1)
            await ready.wait()
            assert broadcast(connections, "hello") == []
            assert await fast.recv() == "hello"
            # The slow client does not read: its server side fills up and gets skipped.
            blob = b"b" * 2**16
            skipped: List[Any] = []
            for _ in range(100):
                skipped = broadcast(connections, blob)
                await fast.recv()
                if skipped:
                    break
            assert len(skipped) == 1 and skipped[0].remote_address == slow.local_address
            await fast.close()
            assert broadcast(connections, "x") != []  # closed connections are skipped
            slow.abort()

    run(main())


def test_queued_messages_survive_the_close(run: Any) -> None:
    async def handler(ws: Any) -> None:
        for i in range(3):
            await ws.send(f"m{i}")
        await ws.close(1000, "done")

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0) as server:
            ws = await connect(uri(server))
            await ws.wait_closed()
            assert ws.closed
            assert [await ws.recv() for _ in range(3)] == ["m0", "m1", "m2"]
            with pytest.raises(wscore.ConnectionClosedOK) as info:
                await ws.recv()
            assert (info.value.code, info.value.reason) == (1000, "done")

    run(main())


def test_close_completes_while_reading_is_paused(run: Any) -> None:
    async def flooder(ws: Any) -> None:
        try:
            while True:
                await ws.send(b"f" * 1000)
        except wscore.ConnectionClosed:
            pass

    async def main() -> None:
        async with serve(flooder, "127.0.0.1", 0, compression=None) as server:
            ws = await connect(uri(server), compression=None, max_queue=2, close_timeout=5)
            await asyncio.sleep(0.2)
            assert not ws.is_reading
            loop = asyncio.get_running_loop()
            start = loop.time()
            await ws.close()
            assert loop.time() - start < 2
            assert ws.close_code == 1000  # a real closing handshake, not a timeout

    run(main())


def test_max_connections_with_slow_hook(run: Any) -> None:
    async def slow_hook(connection: Any, request: Any) -> None:
        await asyncio.sleep(0.2)

    async def main() -> None:
        async with serve(
            echo, "127.0.0.1", 0, max_connections=3, process_request=slow_hook
        ) as server:
            results = await asyncio.gather(
                *(connect(uri(server)) for _ in range(6)), return_exceptions=True
            )
            opened = [r for r in results if not isinstance(r, BaseException)]
            refused = [r for r in results if isinstance(r, wscore.InvalidStatus)]
            assert len(opened) == 3 and len(refused) == 3
            assert {r.status for r in refused} == {503}
            for ws in opened:
                await ws.close()

    run(main())


def test_timer_is_not_rescheduled_per_message(run: Any) -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            async with connect(uri(server)) as ws:
                await ws.send("warm up")
                await ws.recv()
                timer = ws._timer
                assert timer is not None  # the keepalive ping is due in 20 s
                for i in range(200):
                    await ws.send(str(i))
                    assert await ws.recv() == str(i)
                assert ws._timer is timer

    run(main())


def test_runs_on_the_requested_loop(run: Any, loop_kind: str) -> None:
    async def main() -> str:
        return type(asyncio.get_running_loop()).__module__

    module = run(main())
    assert module.startswith("uvloop" if loop_kind == "uvloop" else "asyncio")


def test_server_memory_bounded_when_client_stops_reading(run: Any) -> None:
    sent = 0
    buffered: List[int] = []

    async def flooder(ws: Any) -> None:
        nonlocal sent
        try:
            for _ in range(FLOOD):
                await ws.send(b"s" * 1000)
                sent += 1
                buffered.append(ws.write_buffer_size)
        except wscore.ConnectionClosed:
            pass

    async def main() -> None:
        async with serve(flooder, "127.0.0.1", 0, compression=None, write_limit=8192) as server:
            ws = await connect(uri(server), compression=None, max_queue=4)
            await asyncio.sleep(0.5)
            assert not ws.is_reading  # the client's queue is full: it stopped reading
            stalled = sent
            assert stalled < FLOOD, "the server's send() should wait for the slow client"
            await asyncio.sleep(0.2)
            assert sent == stalled
            # What the server holds in user space stays near write_limit.
            assert max(buffered) <= 8192 + 1100
            assert len([await ws.recv() for _ in range(100)]) == 100
            await ws.close()

    run(main(), timeout=20)


async def _accept_raw(reader: Any, writer: Any) -> None:
    """Answer a client's opening handshake by hand (a server that is only bytes)."""
    head = await reader.readuntil(b"\r\n\r\n")
    key = next(
        line.split(b":", 1)[1].strip().decode()
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key")
    )
    writer.write(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + wscore.accept_token(key).encode() + b"\r\n\r\n"
    )


def test_client_close_bounded_when_server_keeps_tcp_open(run: Any) -> None:
    async def lingering(reader: Any, writer: Any) -> None:
        await _accept_raw(reader, writer)
        opcode, _ = await _read_masked_frame(reader)
        assert opcode == 0x8
        writer.write(b"\x88\x02\x03\xe8")  # close 1000, and the TCP connection stays open
        await reader.read()
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(lingering, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        ws = await connect(f"ws://127.0.0.1:{port}/", compression=None, close_timeout=0.5)
        loop = asyncio.get_running_loop()
        start = loop.time()
        await ws.close()
        assert 0.3 < loop.time() - start < 1.5
        assert ws.close_code == 1000
        server.close()
        await server.wait_closed()

    run(main())


def test_client_keepalive_closes_silent_server(run: Any) -> None:
    frames: List[int] = []

    async def silent(reader: Any, writer: Any) -> None:
        await _accept_raw(reader, writer)
        try:
            while True:
                opcode, _ = await _read_masked_frame(reader)
                frames.append(opcode)
        except asyncio.IncompleteReadError:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        ws = await connect(
            f"ws://127.0.0.1:{port}/", ping_interval=0.1, ping_timeout=0.1, close_timeout=0.2
        )
        with pytest.raises(wscore.ConnectionClosedError) as info:
            await ws.recv()
        assert info.value.code == 1011
        assert isinstance(info.value.error, wscore.KeepaliveTimeout)
        await ws.wait_closed()
        for _ in range(100):  # the raw server reads on its own schedule
            if len(frames) >= 2:
                break
            await asyncio.sleep(0.01)
        server.close()
        await server.wait_closed()
        assert frames[:2] == [0x9, 0x8]  # a ping, then the close

    run(main())


async def _read_masked_frame(reader: Any) -> Any:
    first, second = await reader.readexactly(2)
    length = second & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", await reader.readexactly(8))
    key = await reader.readexactly(4) if second & 0x80 else b"\0\0\0\0"
    payload = await reader.readexactly(length)
    return first & 0x0F, bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def test_recv_timeout_loses_nothing(run: Any) -> None:
    async def handler(ws: Any) -> None:
        async for message in ws:
            if message == "fragments":
                async def slow() -> AsyncIterator[str]:
                    yield "a"
                    await asyncio.sleep(0.3)
                    yield "b"

                await ws.send(slow())
            else:
                await asyncio.sleep(0.3)
                await ws.send(message)

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0) as server:
            async with connect(uri(server), streaming=True) as ws:
                await ws.send("late")
                with pytest.raises(TimeoutError):
                    await ws.recv(timeout=0.05)
                assert await ws.recv(timeout=2) == "late"
                await ws.send("fragments")
                with pytest.raises(TimeoutError):
                    await ws.recv(timeout=0.15)  # took "a", waits for "b"
                assert await ws.recv(timeout=2) == "ab"

    run(main())


def test_close_frame_survives_a_peer_still_sending(run: Any) -> None:
    """After 1009 the server keeps reading until the peer hangs up: no reset eats the close."""

    size = 4 * MiB

    async def pour(writer: Any) -> None:
        try:
            for _ in range(size // 65536):
                writer.write(b"\x00" * 65536)
                await writer.drain()
        except OSError:
            pass

    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, max_size=1000, compression=None) as server:
            for _ in range(5):
                reader, writer = await _raw_handshake(server.port)
                writer.write(b"\x82\xff" + struct.pack("!Q", size) + b"\x00\x00\x00\x00")
                task = asyncio.ensure_future(pour(writer))
                opcode, payload = await _read_frame(reader)
                assert opcode == 0x8 and struct.unpack("!H", payload[:2])[0] == 1009
                assert await asyncio.wait_for(reader.read(), 5) == b""
                # Stop pouring before closing: asyncio (3.12+) may fail a write
                # on a transport that close() has already torn down.
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                writer.close()

    run(main(), timeout=30)


def test_queue_bound_holds_under_deflate_amplification(run: Any) -> None:
    """Many small compressed frames in one read do not all inflate into the queue."""
    held: List[Any] = []
    release = None
    count, size = 300, 100_000

    async def handler(ws: Any) -> None:
        held.append(ws)
        await release.wait()
        received = 0
        async for message in ws:
            assert message == b"\x00" * size
            received += 1
            if received == count:
                await ws.send("all here")

    async def main() -> None:
        nonlocal release
        release = asyncio.Event()
        async with serve(handler, "127.0.0.1", 0, max_queue=4) as server:
            async with connect(uri(server)) as ws:
                assert ws.core.extensions  # permessage-deflate: 100 kB of zeros is ~100 B
                for _ in range(count):
                    await ws.send(b"\x00" * size)
                await asyncio.sleep(0.3)
                server_side = held[0]
                assert len(server_side._queue) <= 5
                assert server_side.core.more_buffered  # the rest waits, compressed
                assert not server_side.is_reading
                release.set()
                assert await asyncio.wait_for(ws.recv(), 10) == "all here"

    run(main())


def test_close_aborts_a_peer_that_never_reads(run: Any) -> None:
    """Our close frame waits behind data the peer never reads: after close_timeout the
    connection is dropped (the write buffer cannot drain, so close() alone would hang)."""
    closed_after: List[float] = []

    async def flooder(ws: Any) -> None:
        loop = asyncio.get_running_loop()

        async def flood() -> None:
            while True:
                await ws.send(b"f" * 65536)  # waits once the write buffer is full

        try:
            await asyncio.wait_for(flood(), 0.5)
        except asyncio.TimeoutError:
            pass
        start = loop.time()
        await ws.close()
        closed_after.append(loop.time() - start)

    async def main() -> None:
        async with serve(flooder, "127.0.0.1", 0, compression=None, close_timeout=0.5) as server:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills at once
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
            reader, writer = await asyncio.open_connection(sock=sock)
            writer.write(upgrade_head().encode())
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
            for _ in range(100):  # never read again
                if closed_after:
                    break
                await asyncio.sleep(0.1)
            writer.close()
            assert closed_after, "the server's close() did not return"
            assert closed_after[0] < 3.0  # close_timeout, the linger, then the abort

    run(main(), timeout=20)


def test_connections_carry_no_instance_dict(run: Any) -> None:
    # Thousands of idle connections: an instance dict would cost ~1.7 KiB each.
    # Applications may still hang their own attributes on a connection.
    seen: List[Any] = []

    async def handler(ws: Any) -> None:
        seen.append(ws)
        async for message in ws:
            await ws.send(message)

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0, ping_interval=0.05) as server:
            async with connect(uri(server), ping_interval=0.05) as ws:
                await ws.send("hello")
                assert await ws.recv() == "hello"
                await asyncio.sleep(0.2)  # keepalive pings and pongs both ways
                await ws.ping()
                for conn in (ws, seen[0]):
                    assert vars(conn) == {}
                    conn.user = "alice"
                    assert conn.user == "alice"

    run(main())
