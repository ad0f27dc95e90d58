"""Messages over the threaded transport: echo, fragments, streaming, pings, close codes."""

from __future__ import annotations

import os
import queue
import threading
import time
from typing import Any, Callable, Iterator

import pytest
from threaded_support import echo

import wscore
from transports.threaded import ConnectionClosedError, ConnectionClosedOK, Server

Start = Callable[..., Server]

SIZES = [0, 1, 125, 126, 127, 65535, 65536, 65537, 2**20, 16 * 2**20]


@pytest.mark.parametrize("size", SIZES)
def test_echo_binary(echo_server: Server, client: Any, size: int) -> None:
    ws = client(echo_server, max_size=2**25)
    data = os.urandom(size)
    ws.send(data)
    received = ws.recv(timeout=20)
    assert isinstance(received, bytes)
    assert received == data


@pytest.mark.parametrize("size", SIZES)
def test_echo_text(echo_server: Server, client: Any, size: int) -> None:
    ws = client(echo_server, max_size=2**26)
    chunk = "héllo wörld €😀 " + os.urandom(32).hex()
    text = (chunk * (size // len(chunk) + 1))[:size]
    ws.send(text)
    received = ws.recv(timeout=20)
    assert isinstance(received, str)
    assert received == text


def test_echo_without_compression(start_server: Start, client: Any) -> None:
    server = start_server(echo, compression=None, max_size=2**22)
    ws = client(server, compression=None, max_size=2**22)
    data = os.urandom(3 * 2**20)
    ws.send(data)
    assert ws.recv(timeout=10) == data
    ws.send(bytearray(b"ba"))
    assert ws.recv(timeout=5) == b"ba"
    ws.send(memoryview(b"mv"))
    assert ws.recv(timeout=5) == b"mv"


def test_too_big_closes_1009(start_server: Start, client: Any) -> None:
    server = start_server(echo, max_size=1000)
    ws = client(server)
    ws.send(b"x" * 1001)
    with pytest.raises(ConnectionClosedError) as info:
        ws.recv(timeout=5)
    assert info.value.code == 1009


def test_fragmented_send_arrives_whole(echo_server: Server, client: Any) -> None:
    ws = client(echo_server)

    def pieces() -> Iterator[str]:
        for i in range(5):
            yield f"part{i};"

    ws.send(pieces())
    assert ws.recv(timeout=5) == "part0;part1;part2;part3;part4;"
    ws.send([b"ab", b"", b"cd"])
    assert ws.recv(timeout=5) == b"abcd"
    ws.send(iter(["only"]))
    assert ws.recv(timeout=5) == "only"
    with pytest.raises(ValueError):
        ws.send([])
    with pytest.raises(TypeError):
        ws.send({"a": 1})  # type: ignore[arg-type]
    ws.send("after")
    assert ws.recv(timeout=5) == "after"


def test_recv_streaming(start_server: Start, client: Any) -> None:
    def handler(ws: Any) -> None:
        ws.send(["one ", "two ", "three"])
        ws.send([b"\x01", b"\x02"])
        ws.send("whole")
        ws.recv()

    server = start_server(handler)
    ws = client(server, streaming=True)
    fragments = list(ws.recv_streaming())
    assert "".join(fragments) == "one two three"
    assert len(fragments) >= 1 and all(isinstance(f, str) for f in fragments)
    # recv() joins the fragments even with streaming=True.
    assert ws.recv(timeout=5) == b"\x01\x02"
    assert list(ws.recv_streaming()) == ["whole"]


def test_recv_streaming_without_streaming_option(start_server: Start, client: Any) -> None:
    def handler(ws: Any) -> None:
        ws.send(["a", "b"])
        ws.recv()

    server = start_server(handler)
    ws = client(server)
    assert list(ws.recv_streaming()) == ["ab"]


def test_recv_timeout(echo_server: Server, client: Any) -> None:
    ws = client(echo_server)
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        ws.recv(timeout=0.2)
    assert 0.15 <= time.monotonic() - start < 2
    with pytest.raises(TimeoutError):
        ws.recv(timeout=0)
    ws.send("still fine")
    assert ws.recv(timeout=5) == "still fine"


def test_ping_latency(echo_server: Server, client: Any) -> None:
    ws = client(echo_server)
    assert ws.latency is None or ws.latency >= 0
    latency = ws.ping().wait(2)
    assert isinstance(latency, float)
    assert 0 <= latency < 2
    assert ws.latency is not None and ws.latency >= 0
    waiter = ws.ping(b"payload")
    assert isinstance(waiter.wait(2), float)
    assert waiter.is_set()
    ws.pong(b"unsolicited")
    ws.send("ok")
    assert ws.recv(timeout=5) == "ok"


def test_ping_from_handler(start_server: Start, client: Any) -> None:
    results: queue.Queue[Any] = queue.Queue()

    def handler(ws: Any) -> None:
        results.put(ws.ping().wait(2))
        results.put(ws.latency)
        ws.recv()

    server = start_server(handler)
    ws = client(server)
    # The client answers the ping although nobody is in recv() (its I/O thread does).
    assert isinstance(results.get(timeout=5), float)
    assert results.get(timeout=5) is not None
    ws.close()


def test_ping_waiter_fails_on_close(start_server: Start, client: Any) -> None:
    def handler(ws: Any) -> None:
        ws.recv()

    server = start_server(handler)
    ws = client(server)
    deadline = time.monotonic() + 5
    while not server.connections and time.monotonic() < deadline:
        time.sleep(0.01)
    next(iter(server.connections)).abort()
    with pytest.raises(wscore.ConnectionClosed):
        ws.ping().wait(3)  # either ping() sees the close or the waiter fails
    with pytest.raises(wscore.ConnectionClosed):
        ws.ping()
    assert ws.close_code == 1006


def test_client_close_4000_seen_by_handler(start_server: Start, client: Any) -> None:
    seen: queue.Queue[Any] = queue.Queue()

    def handler(ws: Any) -> None:
        try:
            for message in ws:
                seen.put(message)
            seen.put("iteration ended")
        except Exception as exc:
            seen.put(exc)

    server = start_server(handler)
    ws = client(server)
    ws.send("hello")
    ws.close(4000, "bye")
    assert ws.close_code == 4000
    assert seen.get(timeout=5) == "hello"
    exc = seen.get(timeout=5)
    assert isinstance(exc, ConnectionClosedError)
    assert (exc.code, exc.reason) == (4000, "bye")


def test_client_close_1000_ends_iteration(start_server: Start, client: Any) -> None:
    seen: queue.Queue[Any] = queue.Queue()

    def handler(ws: Any) -> None:
        try:
            for message in ws:
                seen.put(message)
            seen.put(("ended", ws.close_code))
        except Exception as exc:  # pragma: no cover - a failure
            seen.put(exc)

    server = start_server(handler)
    ws = client(server)
    ws.send("x")
    ws.close()
    assert seen.get(timeout=5) == "x"
    assert seen.get(timeout=5) == ("ended", 1000)
    assert ws.close_code == 1000
    with pytest.raises(ConnectionClosedOK):
        ws.send("too late")
    with pytest.raises(ConnectionClosedOK):
        ws.recv(timeout=1)
    ws.close()  # closing again does nothing


def test_handler_exception_gives_1011(start_server: Start, client: Any) -> None:
    def handler(ws: Any) -> None:
        ws.recv()
        raise RuntimeError("handler bug")

    server = start_server(handler)
    ws = client(server)
    ws.send("trigger")
    with pytest.raises(ConnectionClosedError) as info:
        ws.recv(timeout=5)
    assert info.value.code == 1011


def test_handler_return_gives_1000(start_server: Start, client: Any) -> None:
    def handler(ws: Any) -> None:
        ws.send("bye")

    server = start_server(handler)
    ws = client(server)
    assert ws.recv(timeout=5) == "bye"
    with pytest.raises(ConnectionClosedOK) as info:
        ws.recv(timeout=5)
    assert info.value.code == 1000
    assert ws.close_code == 1000
    assert list(ws) == []


def test_handler_close_code(start_server: Start, client: Any) -> None:
    def handler(ws: Any) -> None:
        ws.close(4001, "custom")

    server = start_server(handler)
    ws = client(server)
    with pytest.raises(ConnectionClosedError) as info:
        ws.recv(timeout=5)
    assert (info.value.code, info.value.reason) == (4001, "custom")


def test_invalid_close_code(echo_server: Server, client: Any) -> None:
    ws = client(echo_server)
    with pytest.raises(wscore.LocalProtocolError):
        ws.close(1005)
    with pytest.raises(wscore.LocalProtocolError):
        ws.close(1000, "x" * 124)
    ws.send("open")
    assert ws.recv(timeout=5) == "open"


def test_concurrent_senders(start_server: Start, client: Any) -> None:
    threads, per_thread = 4, 200
    total = threads * per_thread
    received: queue.Queue[Any] = queue.Queue()

    def handler(ws: Any) -> None:
        for _ in range(total):
            received.put(ws.recv())

    server = start_server(handler, max_size=2**22)
    ws = client(server, max_size=2**22)

    def sender(n: int) -> None:
        for i in range(per_thread):
            # Sizes vary up to ~200 KB so frames would interleave without locking.
            body = f"[{n}:{i}]" * (1 + (i * 7919 % 20000))
            if i % 3 == 0:
                ws.send(body.encode())
            elif i % 3 == 1:
                ws.send(body)
            else:
                ws.send([body[: len(body) // 2], body[len(body) // 2 :]])

    pool = [threading.Thread(target=sender, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(30)
    counts = {n: 0 for n in range(threads)}
    for _ in range(total):
        message = received.get(timeout=10)
        text = message.decode() if isinstance(message, bytes) else message
        head = text[: text.index("]") + 1]
        assert text == head * (len(text) // len(head)), "a message arrived mixed up"
        n = int(head[1 : head.index(":")])
        counts[n] += 1
    assert counts == {n: per_thread for n in range(threads)}


def test_two_concurrent_recv(echo_server: Server, client: Any) -> None:
    ws = client(echo_server)
    errors: queue.Queue[Any] = queue.Queue()

    def first() -> None:
        try:
            errors.put(ws.recv(timeout=5))
        except Exception as exc:  # pragma: no cover
            errors.put(exc)

    thread = threading.Thread(target=first)
    thread.start()
    time.sleep(0.1)
    with pytest.raises(wscore.ConcurrencyError):
        ws.recv(timeout=1)
    with pytest.raises(wscore.ConcurrencyError):
        next(iter(ws.recv_streaming()))
    ws.send("for the first")
    assert errors.get(timeout=5) == "for the first"
    thread.join(5)


def test_many_clients(echo_server: Server) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from transports.threaded import connect

    clients, messages = 200, 100
    url = f"ws://127.0.0.1:{echo_server.port}/"

    def run(n: int) -> int:
        with connect(url, open_timeout=10) as ws:
            for i in range(messages):
                ws.send(f"{n}:{i}")
                # Pipeline a few messages ahead to keep the server busy.
                if i % 4 == 3:
                    for j in range(i - 3, i + 1):
                        assert ws.recv(timeout=10) == f"{n}:{j}"
        return n

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        done = sorted(pool.map(run, range(clients), timeout=30))
    assert done == list(range(clients))
    assert time.monotonic() - start < 15


@pytest.mark.parametrize("then", ["recv", "recv_streaming"])
def test_streaming_recv_timeout_mid_message_keeps_fragments(
    start_server: Start, client: Any, then: str
) -> None:
    def slow_fragments() -> Iterator[str]:
        yield "a-"
        yield "b-"  # "a-" goes out once the next fragment is known
        time.sleep(0.5)
        yield "c"

    def handler(ws: Any) -> None:
        ws.send(slow_fragments())
        ws.recv()

    server = start_server(handler, compression=None)
    ws = client(server, streaming=True, compression=None)
    with pytest.raises(TimeoutError):
        ws.recv(timeout=0.2)  # "a-" arrived, the rest did not
    if then == "recv":
        assert ws.recv(timeout=5) == "a-b-c"
    else:
        assert "".join(ws.recv_streaming()) == "a-b-c"


def test_connections_carry_no_instance_dict(start_server: Start, client: Any) -> None:
    # Thousands of idle connections: an instance dict would cost ~1.7 KiB each.
    # Applications may still hang their own attributes on a connection.
    seen: queue.Queue[Any] = queue.Queue()

    def handler(ws: Any) -> None:
        seen.put(ws)
        for message in ws:
            ws.send(message)

    server = start_server(handler)
    ws = client(server, ping_interval=0.05)
    ws.send("hello")
    assert ws.recv(timeout=5) == "hello"
    time.sleep(0.2)  # keepalive pings and pongs both ways
    ws.ping().wait(5)
    remote = seen.get(timeout=5)
    for conn in (ws, remote):
        assert vars(conn) == {}
        conn.user = "alice"
        assert conn.user == "alice"
