"""Keepalive, flow control and shutdown of the threaded transport."""

from __future__ import annotations

import base64
import os
import queue
import socket
import threading
import time
from typing import Any, Callable, List

import pytest
from frames_support import masked_text, unmasked_payloads
from threaded_support import HOST, echo, uri, wait_until

from transports.threaded import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    Server,
    ServerConnection,
    connect,
)
from transports.threaded.ioloop import client_loop

Start = Callable[..., Server]
READ_SIZE = 65536  # what the transport reads from a socket at once


def raw_handshake(port: int, path: str = "/") -> socket.socket:
    """Open a WebSocket connection by hand and return the socket, past the 101."""
    sock = socket.create_connection((HOST, port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        assert chunk, "connection closed during the handshake"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.01)


def only_connection(server: Server) -> ServerConnection:
    assert wait_for(lambda: server.connections), "no connection on the server"
    (conn,) = server.connections
    return conn


@pytest.mark.parametrize("in_recv", [True, False], ids=["handler-in-recv", "handler-busy"])
def test_keepalive_closes_silent_peer(start_server: Start, in_recv: bool) -> None:
    outcome: queue.Queue[Any] = queue.Queue()

    def handler(ws: Any) -> None:
        try:
            if in_recv:
                ws.recv(timeout=5)
            else:
                time.sleep(1.0)  # the I/O thread runs the keepalive meanwhile
                ws.send("late")
            outcome.put("no error")
        except Exception as exc:
            outcome.put(exc)

    server = start_server(handler, ping_interval=0.2, ping_timeout=0.2, close_timeout=0.5)
    sock = raw_handshake(server.port)
    try:
        start = time.monotonic()
        exc = outcome.get(timeout=5)
        assert isinstance(exc, ConnectionClosedError), exc
        assert exc.code == 1011
        assert time.monotonic() - start < 3
    finally:
        sock.close()


def test_keepalive_keeps_live_peer(start_server: Start, client: Any) -> None:
    server = start_server(echo, ping_interval=0.1, ping_timeout=0.5)
    ws = client(server, ping_interval=0.1, ping_timeout=0.5)
    time.sleep(0.6)  # several pings each way, with nobody in recv() on the client
    ws.send("alive")
    assert ws.recv(timeout=5) == "alive"
    assert ws.latency is not None


def test_client_keepalive_closes_silent_server() -> None:
    listener = socket.socket()
    listener.bind((HOST, 0))
    listener.listen(1)
    accepted: List[socket.socket] = []

    def silent_server() -> None:
        sock, _ = listener.accept()
        accepted.append(sock)
        request = b""
        while b"\r\n\r\n" not in request:
            request += sock.recv(4096)
        key = [
            line.split(b":", 1)[1].strip()
            for line in request.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key")
        ][0]
        import wscore

        sock.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
            + wscore.accept_token(key.decode()).encode()
            + b"\r\n\r\n"
        )

    thread = threading.Thread(target=silent_server, daemon=True)
    thread.start()
    try:
        ws = connect(
            f"ws://{HOST}:{listener.getsockname()[1]}/",
            open_timeout=5,
            ping_interval=0.2,
            ping_timeout=0.2,
            close_timeout=0.5,
        )
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv(timeout=5)
        assert info.value.code == 1011
    finally:
        listener.close()
        for sock in accepted:
            sock.close()


def test_send_blocks_when_peer_stops_reading(start_server: Start) -> None:
    write_limit, size = 8192, 1000
    sent = [0]
    stop = threading.Event()

    def handler(ws: Any) -> None:
        try:
            while not stop.is_set():
                ws.send(f"{sent[0]:08d}".encode() + b"x" * (size - 8))
                sent[0] += 1
        except ConnectionClosed:
            pass

    server = start_server(handler, write_limit=write_limit, compression=None, max_queue=4)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.connect((HOST, server.port))
    ws = connect(uri(server), sock=sock, compression=None, max_queue=4, open_timeout=5)
    try:
        conn = only_connection(server)
        # The handler's send() blocks: the count stops growing.
        previous = -1
        deadline = time.monotonic() + 10
        while sent[0] != previous and time.monotonic() < deadline:
            previous = sent[0]
            time.sleep(0.3)
        assert sent[0] == previous, "send() never blocked"
        peak = 0
        for _ in range(20):
            with conn._lock:
                peak = max(peak, len(conn._pending))
            time.sleep(0.01)
        assert peak <= write_limit + size + 14
        # The client stopped reading with its queue full; one read (64 KiB) is
        # decoded whole, so the queue may hold that read's messages on top.
        assert len(ws._messages) <= 4 + READ_SIZE // size + 1
        blocked_at = sent[0]
        # Reading again resumes the sender; every message arrives in order.
        for i in range(blocked_at + 50):
            message = ws.recv(timeout=5)
            assert int(message[:8]) == i
        stop.set()
    finally:
        stop.set()
        ws.abort()


def test_server_stops_reading_after_max_queue(start_server: Start) -> None:
    max_queue, count = 8, 3000
    start_reading = threading.Event()
    received: List[Any] = []

    def handler(ws: Any) -> None:
        start_reading.wait(10)
        for _ in range(count):
            received.append(ws.recv(timeout=5))

    server = start_server(handler, max_queue=max_queue, compression=None, max_size=2**16)
    ws = connect(uri(server), compression=None, write_limit=4096, open_timeout=5)
    sent = [0]

    def sender() -> None:
        try:
            for i in range(count):
                ws.send(f"{i:08d}" + "y" * 2000)
                sent[0] += 1
        except ConnectionClosed:  # pragma: no cover
            pass

    thread = threading.Thread(target=sender, daemon=True)
    thread.start()
    try:
        conn = only_connection(server)
        previous = -1
        deadline = time.monotonic() + 10
        while sent[0] != previous and time.monotonic() < deadline:
            previous = sent[0]
            time.sleep(0.3)
        assert sent[0] < count, "the client's sends never blocked"
        with conn._lock:
            queued = len(conn._messages)
            interest = conn._interest
        # Reading stops once max_queue messages wait; the messages of the last
        # read (at most 64 KiB of frames) are queued on top of them.
        assert max_queue <= queued <= max_queue + READ_SIZE // 2012 + 1, queued
        assert not interest & 1, "the server still reads with a full queue"
        start_reading.set()
        thread.join(15)
        assert wait_for(lambda: len(received) == count, 15)
        assert [int(m[:8]) for m in received] == list(range(count))
    finally:
        start_reading.set()
        ws.abort()


@pytest.mark.parametrize("from_handler", [False, True], ids=["from-test", "from-handler"])
def test_shutdown_delivers_accepted_messages(start_server: Start, from_handler: bool) -> None:
    count = 500
    sent = threading.Event()
    total = [0]  # messages sent
    left = [0]  # bytes still in the server's write buffer as the handler finished

    def handler(ws: Any) -> None:
        ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        i = 0
        # The client reads the last ones slowly: a few more sends leave some of
        # them in the server's write buffer (not the kernel's) for shutdown to deliver.
        while i < count or (not ws._pending and i < count + 100):
            ws.send(f"{i:06d}" + "z" * 4000)
            i += 1
        total[0], left[0] = i, len(ws._pending)
        sent.set()
        if from_handler:
            ws.server.shutdown(timeout=5)
        else:
            ws.recv()  # until the server closes

    server = start_server(handler, write_limit=16384, compression=None)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.connect((HOST, server.port))
    ws = connect(uri(server), sock=sock, compression=None, max_queue=2, open_timeout=5)
    stopper = None
    try:
        time.sleep(0.3)  # the handler's sends block: the client does not read yet
        assert not sent.is_set()
        messages = []
        with pytest.raises(ConnectionClosedOK) as info:
            while True:
                messages.append(ws.recv(timeout=5))
                if len(messages) >= count - 40:
                    # Read the last messages slowly: the handler can finish, and its
                    # last messages are still on the server (in its write buffer)
                    # when it shuts down. (Stopping outright until the handler is
                    # done could deadlock: how much the kernel's buffers take
                    # varies from run to run.)
                    time.sleep(0.02)
                if not from_handler and stopper is None and sent.is_set():
                    stopper = threading.Thread(target=server.shutdown, kwargs={"timeout": 5})
                    stopper.start()
        assert info.value.code == 1001
        assert [int(m[:6]) for m in messages] == list(range(total[0]))
        assert left[0] > 0, "the test did not leave messages in the server's buffer"
        assert server._stopped.wait(5)
    finally:
        ws.abort()
        if stopper is not None:
            stopper.join(5)


def test_shutdown_from_a_handler(start_server: Start, client: Any) -> None:
    def handler(ws: Any) -> None:
        for message in ws:
            if message == "stop":
                ws.send("stopping")
                ws.server.shutdown(timeout=2)
                return
            ws.send(message)

    server = start_server(handler)
    other = client(server)
    ws = client(server)
    ws.send("echo")
    assert ws.recv(timeout=5) == "echo"
    start = time.monotonic()
    ws.send("stop")
    assert ws.recv(timeout=5) == "stopping"
    with pytest.raises(ConnectionClosedOK) as info:
        ws.recv(timeout=5)
    assert info.value.code == 1001
    with pytest.raises(ConnectionClosedOK):
        other.recv(timeout=5)
    assert time.monotonic() - start < 3
    with pytest.raises(OSError):
        connect(uri(server), open_timeout=1)
    assert server._stopped.wait(3), "shutdown() from a handler did not finish"


def test_shutdown_closes_idle_clients(start_server: Start, client: Any) -> None:
    server = start_server(echo)
    clients = [client(server) for _ in range(5)]
    start = time.monotonic()
    server.shutdown(timeout=5)
    assert time.monotonic() - start < 2
    for ws in clients:
        with pytest.raises(ConnectionClosedOK) as info:
            ws.recv(timeout=5)
        assert info.value.code == 1001
    assert server.connections == set()


@pytest.mark.parametrize(
    "frame, code",
    [
        (b"\x81\x02hi", 1002),  # a client frame must be masked
        (b"\x81\x82\x00\x00\x00\x00\xff\xfe", 1007),  # invalid UTF-8 in a text message
    ],
    ids=["unmasked", "bad-utf8"],
)
def test_protocol_errors_close_the_connection(start_server: Start, frame: bytes, code: int) -> None:
    outcome: queue.Queue[Any] = queue.Queue()

    def handler(ws: Any) -> None:
        try:
            outcome.put(ws.recv(timeout=5))
        except Exception as exc:
            outcome.put(exc)

    server = start_server(handler)
    sock = raw_handshake(server.port)
    try:
        sock.sendall(frame)
        exc = outcome.get(timeout=5)
        assert isinstance(exc, ConnectionClosedError), exc
        assert exc.code == code
        reply = sock.recv(2 + 125)
        assert reply[0] == 0x88 and int.from_bytes(reply[2:4], "big") == code
    finally:
        sock.close()


@pytest.mark.parametrize("clean", [True, False], ids=["clean-close", "protocol-error"])
def test_server_closes_tcp_after_the_closing_handshake(start_server: Start, clean: bool) -> None:
    # After a clean closing handshake nothing may follow the peer's close frame, so
    # the server closes TCP at once (RFC 6455, 7.1.1), with a FIN, not a reset. After
    # an error it lingers instead: it sends FIN and reads until the peer's EOF, so its
    # close frame is not destroyed by a reset for unread bytes.
    conns: queue.Queue[Any] = queue.Queue()

    def handler(ws: Any) -> None:
        conns.put(ws)
        for _ in ws:
            pass

    server = start_server(handler)
    sock = raw_handshake(server.port)
    try:
        ws = conns.get(timeout=5)
        close = b"\x88\x82\x00\x00\x00\x00\x03\xe8" if clean else b"\x81\x02hi"
        sock.sendall(close)
        sock.settimeout(5)
        received = b""
        while True:
            chunk = sock.recv(4096)  # the server's close frame, then its FIN
            if not chunk:
                break
            received += chunk
        assert received[:1] == b"\x88"
        # The client keeps its side open. A clean close left nothing to wait for.
        if clean:
            assert wait_until(lambda: ws.sock.fileno() == -1, timeout=1.0)
        else:
            time.sleep(0.3)
            assert ws.sock.fileno() != -1  # lingering until our EOF (or 2 s)
    finally:
        sock.close()


class CountingSocket:
    """A connection's socket, with its ``send`` calls recorded."""

    def __init__(self, sock: socket.socket, sends: List[int]) -> None:
        self._sock = sock
        self._sends = sends

    def send(self, data: Any, *flags: int) -> int:
        self._sends.append(len(data))
        return self._sock.send(data, *flags)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def read_frames(sock: socket.socket, count: int) -> bytes:
    """Read until ``count`` whole unmasked frames came; return the bytes read."""
    received = b""
    while len(unmasked_payloads(received)) < count:
        chunk = sock.recv(65536)
        assert chunk, "connection closed"
        received += chunk
    return received


def read_payloads(sock: socket.socket, count: int) -> List[bytes]:
    return unmasked_payloads(read_frames(sock, count))


@pytest.mark.parametrize("max_queue", [16, 4])
def test_answers_to_a_batch_share_one_send(start_server: Start, max_queue: int) -> None:
    sends: List[int] = []

    def handler(ws: Any) -> None:
        ws.sock = CountingSocket(ws.sock, sends)
        for message in ws:
            ws.send(message)

    server = start_server(handler, compression=None, max_queue=max_queue)
    sock = raw_handshake(server.port)
    messages = [f"message {i}".encode() for i in range(64)]
    sock.sendall(b"".join(masked_text(m) for m in messages))  # one segment
    assert read_payloads(sock, 64) == messages  # all of them, in order
    # One send per message would be 64; the answers to what one read brought leave
    # together (a few sends if the first answers went out before the rest came).
    assert 1 <= len(sends) <= 4, sends
    sends.clear()
    sock.sendall(masked_text(b"alone"))  # a lone message is answered at once
    assert read_payloads(sock, 1) == [b"alone"]
    assert len(sends) == 1
    sock.close()


def test_held_answers_leave_when_the_handler_is_busy(start_server: Start) -> None:
    # An answer held back because more messages wait goes out within milliseconds
    # even if the handler then works for a long time without calling recv().
    def handler(ws: Any) -> None:
        first = ws.recv()
        ws.send(first)
        time.sleep(1.0)
        for message in ws:
            ws.send(message)

    server = start_server(handler, compression=None)
    sock = raw_handshake(server.port)
    sock.sendall(masked_text(b"one") + masked_text(b"two") + masked_text(b"three"))
    started = time.monotonic()
    assert read_payloads(sock, 1) == [b"one"]
    assert time.monotonic() - started < 0.5
    assert read_payloads(sock, 2) == [b"two", b"three"]
    sock.close()


def test_close_sends_held_answers_first(start_server: Start) -> None:
    # An answer held back (more messages wait) leaves before the close frame.
    def handler(ws: Any) -> None:
        ws.send(ws.recv())
        ws.close(1000, "bye")

    server = start_server(handler, compression=None)
    sock = raw_handshake(server.port)
    sock.sendall(masked_text(b"one") + masked_text(b"two") + masked_text(b"three"))
    received = read_frames(sock, 2)
    first, close = unmasked_payloads(received)[:2]
    assert first == b"one"
    assert received[0] == 0x81 and received[2 + len(first)] == 0x88  # text, then close
    assert close == b"\x03\xe8bye"
    sock.close()


def test_held_answers_leave_no_timers_behind(start_server: Start) -> None:
    # Each held batch arms a short timer; its firing must not add another copy of
    # the keepalive timer to the loop's heap (which would then pile up for 20 s).
    def handler(ws: Any) -> None:
        for message in ws:
            ws.send(message)

    server = start_server(handler, compression=None, ping_interval=20)
    sock = raw_handshake(server.port)
    for batch in range(30):
        messages = [f"{batch}-{i}".encode() for i in range(8)]
        sock.sendall(b"".join(masked_text(m) for m in messages))
        assert read_payloads(sock, 8) == messages
        time.sleep(0.005)  # the batch's timer fires
    time.sleep(0.05)
    with server._loop._lock:
        timers = len(server._loop._heap)
    assert timers <= 5, timers
    sock.close()


def test_closed_connections_leave_the_timer_heaps(start_server: Start) -> None:
    # Keepalive and close timers of closed connections are swept from the I/O loops'
    # heaps instead of staying until their deadlines (20 s of keepalive here).
    server = start_server(echo, ping_interval=20)
    for _ in range(600):
        with connect(uri(server), ping_interval=20, open_timeout=5) as ws:
            ws.send("x")
            assert ws.recv(timeout=5) == "x"
    with client_loop()._lock:
        client_timers = len(client_loop()._heap)
    with server._loop._lock:
        server_timers = len(server._loop._heap)
    assert client_timers <= 400, client_timers  # 3 per connection before: 1,800
    assert server_timers <= 400, server_timers  # 1 per connection before: 600
