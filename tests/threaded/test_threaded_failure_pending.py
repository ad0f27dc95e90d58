"""A protocol error right behind valid messages: the answers go out before the close frame.

What the Autobahn cases 3.2-3.4, 4.1.3-4.2.5 and 5.15 check: the peer sends a
message and, in the same write, a bad frame (here RSV2 set); the echo of the
message must come before our close frame (1002), not be refused.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from typing import Any, Callable, List, Tuple

import pytest
from frames_support import UPGRADE_REQUEST
from threaded_support import HOST

import wscore
from transports.threaded import ConnectionClosedError, Server, connect

Start = Callable[..., Server]


def make_frame(opcode: int, payload: bytes = b"", rsv: int = 0, masked: bool = True) -> bytes:
    """A small frame (payload up to 125 bytes), masked as a client sends it."""
    assert len(payload) <= 125
    head = bytes([0x80 | (rsv << 4) | opcode, (0x80 if masked else 0) | len(payload)])
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def read_frame(sock: socket.socket) -> Tuple[int, bytes]:
    """The next frame's opcode and payload (unmasked if it is masked)."""

    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            assert chunk, f"EOF after {data!r}"
            data += chunk
        return data

    first, second = exactly(2)
    length = second & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", exactly(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", exactly(8))
    key = exactly(4) if second & 0x80 else None
    payload = exactly(length)
    if key is not None:
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return first & 0x0F, payload


def raw_client(port: int) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=5)
    sock.sendall(UPGRADE_REQUEST)
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        assert chunk
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def close_code(payload: bytes) -> int:
    return int(struct.unpack("!H", payload[:2])[0])


BAD = make_frame(0x1, b"bad", rsv=2)  # RSV2: no extension defines it


@pytest.mark.parametrize("compression", ["deflate", None])
def test_server_echoes_before_failing(start_server: Start, compression: Any) -> None:
    def echo(ws: Any) -> None:
        for message in ws:
            ws.send(message)

    server = start_server(echo, compression=compression)
    with raw_client(server.port) as sock:
        # One write: a message, the bad frame, then a ping that must not be answered.
        sock.sendall(make_frame(0x1, b"Hello") + BAD + make_frame(0x9, b"p"))
        assert read_frame(sock) == (0x1, b"Hello")
        opcode, payload = read_frame(sock)
        assert opcode == 0x8 and close_code(payload) == 1002
        assert sock.recv(100) == b""  # nothing else: no pong, then EOF


def test_bad_frame_in_a_later_read_while_the_handler_is_busy(start_server: Start) -> None:
    def slow_echo(ws: Any) -> None:
        for message in ws:
            time.sleep(0.3)  # the bad frame arrives meanwhile (Autobahn 3.4)
            ws.send(message)

    server = start_server(slow_echo)
    with raw_client(server.port) as sock:
        sock.sendall(make_frame(0x1, b"Hello"))
        time.sleep(0.1)
        sock.sendall(BAD)
        assert read_frame(sock) == (0x1, b"Hello")
        opcode, payload = read_frame(sock)
        assert opcode == 0x8 and close_code(payload) == 1002


def test_handler_that_never_receives_gets_the_failure_after_close_timeout(
    start_server: Start,
) -> None:
    go = threading.Event()
    outcome: List[Any] = []

    def producer(ws: Any) -> None:
        go.wait(5)
        ws.send("late")  # the connection is still OPEN: the peer's error is held back
        start = time.monotonic()
        while ws.state is wscore.State.OPEN and time.monotonic() - start < 5:
            time.sleep(0.02)
        outcome.append((ws.state, ws.close_code))

    server = start_server(producer, compression=None, close_timeout=1.0)
    with raw_client(server.port) as sock:
        sock.sendall(make_frame(0x1, b"Hello") + BAD)
        start = time.monotonic()
        time.sleep(0.2)  # the server has read the bad frame by now
        go.set()
        assert read_frame(sock) == (0x1, b"late")
        opcode, payload = read_frame(sock)
        assert opcode == 0x8 and close_code(payload) == 1002
        assert time.monotonic() - start < 4  # close_timeout bounds it
    deadline = time.monotonic() + 5
    while not outcome and time.monotonic() < deadline:
        time.sleep(0.02)
    assert outcome == [(wscore.State.CLOSED, 1002)]


def test_client_echoes_before_failing() -> None:
    listener = socket.socket()
    listener.bind((HOST, 0))
    listener.listen(1)
    received: List[Tuple[int, bytes]] = []
    done = threading.Event()

    def raw_server() -> None:
        sock, _ = listener.accept()
        with sock:
            sock.settimeout(5)
            request = b""
            while b"\r\n\r\n" not in request:
                request += sock.recv(4096)
            key = next(
                line.split(b":", 1)[1].strip().decode()
                for line in request.split(b"\r\n")
                if line.lower().startswith(b"sec-websocket-key")
            )
            sock.sendall(  # the 101, a message and the bad frame in one write
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                + wscore.accept_token(key).encode()
                + b"\r\n\r\n"
                + make_frame(0x1, b"hello", masked=False)
                + make_frame(0x1, b"bad", rsv=2, masked=False)
            )
            received.append(read_frame(sock))
            received.append(read_frame(sock))
            done.wait(5)

    thread = threading.Thread(target=raw_server, daemon=True)
    thread.start()
    try:
        ws = connect(f"ws://{HOST}:{listener.getsockname()[1]}/", open_timeout=5)
        assert ws.recv(timeout=5) == "hello"
        ws.send("hello")
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv(timeout=5)
        assert info.value.code == 1002
        ws.abort()
    finally:
        done.set()
        thread.join(5)
        listener.close()
    assert received[0] == (0x1, b"hello")
    assert received[1][0] == 0x8 and close_code(received[1][1]) == 1002
