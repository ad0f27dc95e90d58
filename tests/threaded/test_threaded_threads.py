"""Threads meeting on one connection: close or abort while another thread waits, broadcast."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable, List, Optional

import pytest
from threaded_support import echo, wait_until

from transports.threaded import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    Server,
    broadcast,
)

Start = Callable[..., Server]


def blocked_recv(ws: Any, timeout: Optional[float] = 10) -> queue.Queue[Any]:
    """Start a thread blocked in ``ws.recv()``; its outcome lands in the queue."""
    outcome: queue.Queue[Any] = queue.Queue()

    def run() -> None:
        start = time.monotonic()
        try:
            outcome.put((ws.recv(timeout=timeout), time.monotonic() - start))
        except Exception as exc:
            outcome.put((exc, time.monotonic() - start))

    threading.Thread(target=run, daemon=True).start()
    time.sleep(0.1)
    return outcome


def test_close_while_another_thread_receives(echo_server: Server, client: Any) -> None:
    ws = client(echo_server)
    outcome = blocked_recv(ws)
    start = time.monotonic()
    ws.close()
    assert time.monotonic() - start < 1
    exc, _ = outcome.get(timeout=5)
    assert isinstance(exc, ConnectionClosedOK)
    assert ws.close_code == 1000


def test_abort_while_another_thread_receives(echo_server: Server, client: Any) -> None:
    ws = client(echo_server)
    outcome = blocked_recv(ws)
    start = time.monotonic()
    ws.abort()
    exc, _ = outcome.get(timeout=5)
    assert time.monotonic() - start < 0.9, "recv() noticed the abort only at its poll cap"
    assert isinstance(exc, ConnectionClosedError)
    assert ws.close_code == 1006


@pytest.mark.parametrize("tls", [False, True])
def test_abort_wakes_a_recv_without_timeout(
    start_server: Start, client: Any, tls_contexts: tuple, tls: bool
) -> None:
    # Without a timeout, a reader on a plain socket sleeps in a blocking recv()
    # (Linux), outside the lock; over TLS it polls. Either way the abort wakes it
    # at once, and the socket is closed once the reader let go of it.
    if tls:
        server_ctx, client_ctx = tls_contexts
        server = start_server(echo, ssl=server_ctx)
        ws = client(f"wss://localhost:{server.port}/", ssl=client_ctx)
    else:
        ws = client(start_server(echo))
    ws.send("before")
    assert ws.recv() == "before"
    outcome = blocked_recv(ws, timeout=None)
    start = time.monotonic()
    ws.abort()
    exc, _ = outcome.get(timeout=5)
    assert time.monotonic() - start < 0.9, "recv() noticed the abort only after it timed out"
    assert isinstance(exc, ConnectionClosedError)
    assert wait_until(lambda: ws.sock.fileno() == -1)


def test_peer_drop_while_receiving(start_server: Start, client: Any) -> None:
    def handler(ws: Any) -> None:
        ws.recv()
        ws.abort()

    server = start_server(handler)
    ws = client(server)
    ws.send("go")
    with pytest.raises(ConnectionClosedError) as info:
        ws.recv(timeout=5)
    assert info.value.code == 1006


def test_send_while_another_thread_receives(start_server: Start, client: Any) -> None:
    def handler(ws: Any) -> None:
        for message in ws:
            ws.send(message.upper())

    server = start_server(handler)
    ws = client(server)
    got: List[Any] = []

    def reader() -> None:
        for _ in range(100):
            got.append(ws.recv(timeout=5))

    thread = threading.Thread(target=reader)
    thread.start()
    for i in range(100):
        ws.send(f"m{i}")
    thread.join(10)
    assert got == [f"M{i}" for i in range(100)]


def test_broadcast(start_server: Start, client: Any) -> None:
    server = start_server(echo)
    clients = [client(server) for _ in range(10)]
    deadline = time.monotonic() + 5
    while len(server.connections) < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert broadcast(server.connections, "to all") == []
    for ws in clients:
        assert ws.recv(timeout=5) == "to all"
    clients[0].close()
    deadline = time.monotonic() + 5
    while len(server.connections) > 9 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert broadcast(server.connections, b"\x00") == []
    for ws in clients[1:]:
        assert ws.recv(timeout=5) == b"\x00"


def test_send_after_peer_closed(start_server: Start, client: Any) -> None:
    closed = threading.Event()
    errors: queue.Queue[Any] = queue.Queue()

    def handler(ws: Any) -> None:
        try:
            ws.recv()
        except ConnectionClosed:
            pass
        closed.set()
        try:
            ws.send("too late")
        except Exception as exc:
            errors.put(exc)

    server = start_server(handler)
    ws = client(server)
    ws.close(4002)
    assert closed.wait(5)
    exc = errors.get(timeout=5)
    assert isinstance(exc, ConnectionClosedError) and exc.code == 4002


def test_tls_backpressure_and_resume(start_server: Start, client: Any, tls_contexts: tuple) -> None:
    server_ctx, client_ctx = tls_contexts
    count = 300
    go = threading.Event()
    received: List[Any] = []

    def handler(ws: Any) -> None:
        go.wait(10)
        for _ in range(count):
            received.append(ws.recv(timeout=5))
        ws.send("done")

    server = start_server(handler, ssl=server_ctx, max_queue=2, compression=None)
    ws = client(
        f"wss://localhost:{server.port}/", ssl=client_ctx, compression=None, write_limit=4096
    )

    def sender() -> None:
        for i in range(count):
            ws.send(f"{i:05d}" + "t" * 3000)

    thread = threading.Thread(target=sender, daemon=True)
    thread.start()
    time.sleep(0.5)  # the server's queue is full and it stopped reading
    go.set()
    thread.join(10)
    assert ws.recv(timeout=10) == "done"
    assert [int(m[:5]) for m in received] == list(range(count))


def test_busy_handler_still_answers_pings(start_server: Start, client: Any) -> None:
    def handler(ws: Any) -> None:
        ws.recv()
        time.sleep(0.6)  # away from recv(): the I/O thread takes the socket back
        ws.send("back")

    server = start_server(handler)
    ws = client(server)
    ws.send("go")
    time.sleep(0.2)
    assert ws.ping().wait(1) < 1
    assert ws.recv(timeout=5) == "back"


def test_broadcast_skips_a_slow_client(start_server: Start, client: Any) -> None:
    import socket

    from transports.threaded import connect

    server = start_server(echo, write_limit=4096, compression=None)
    fast = client(server, compression=None)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    sock.connect(("127.0.0.1", server.port))
    slow = connect(
        f"ws://127.0.0.1:{server.port}/", sock=sock, compression=None, max_queue=1, open_timeout=5
    )
    try:
        deadline = time.monotonic() + 5
        while len(server.connections) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        skipped: List[Any] = []
        sent = 0
        while not skipped and sent < 2000:
            skipped = broadcast(server.connections, b"x" * 10000)
            sent += 1
            assert fast.recv(timeout=5) == b"x" * 10000
        assert len(skipped) == 1 and skipped[0].remote_address == slow.local_address
        assert sent < 2000
    finally:
        slow.abort()
