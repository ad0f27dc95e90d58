"""Opening handshake of the threaded transport: subprotocols, rejections, HTTP, TLS, unix."""

from __future__ import annotations

import http.client
import os
import threading
from typing import Any, Callable

import pytest
from threaded_support import HOST, echo, uri

import wscore
from transports._common import demo_http
from transports.threaded import Server, connect

Start = Callable[..., Server]


def http_get(server: Server, path: str, headers: Any = None) -> tuple:
    conn = http.client.HTTPConnection(HOST, server.port, timeout=5)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_subprotocol_server_preference(start_server: Start, client: Any) -> None:
    seen = []

    def handler(ws: Any) -> None:
        seen.append(ws.subprotocol)
        ws.send(ws.subprotocol or "")

    server = start_server(handler, subprotocols=["chat.v2", "chat.v1"])
    ws = client(server, subprotocols=["chat.v1", "chat.v2"])
    assert ws.subprotocol == "chat.v2"
    assert ws.recv(timeout=5) == "chat.v2"
    assert seen == ["chat.v2"]
    ws2 = client(server, subprotocols=["chat.v1", "other"])
    assert ws2.subprotocol == "chat.v1"
    ws3 = client(server)
    assert ws3.subprotocol is None


def test_process_request_rejects(start_server: Start) -> None:
    def process_request(conn: Any, request: wscore.Request) -> Any:
        if request.path == "/private":
            return 401, "who are you?\n", [("WWW-Authenticate", "Basic")]
        return None

    server = start_server(echo, process_request=process_request)
    with pytest.raises(wscore.InvalidStatus) as info:
        connect(uri(server, "/private"), open_timeout=5)
    assert info.value.status == 401
    assert info.value.response.body == b"who are you?\n"
    assert info.value.response.headers["WWW-Authenticate"] == "Basic"
    with connect(uri(server, "/public"), open_timeout=5) as ws:
        ws.send("hi")
        assert ws.recv(timeout=5) == "hi"


def test_process_request_failing_answers_500(start_server: Start) -> None:
    def process_request(conn: Any, request: wscore.Request) -> Any:
        raise RuntimeError("boom")

    server = start_server(echo, process_request=process_request)
    with pytest.raises(wscore.InvalidStatus) as info:
        connect(uri(server), open_timeout=5)
    assert info.value.status == 500


def test_plain_http_gets_426(echo_server: Server) -> None:
    status, headers, body = http_get(echo_server, "/")
    assert status == 426
    assert headers.get("Upgrade", "").lower() == "websocket"
    assert b"WebSocket" in body


def test_demo_http_routes(start_server: Start, client: Any) -> None:
    server = start_server(echo, process_request=lambda conn, request: demo_http(request))
    status, _, body = http_get(server, "/healthz")
    assert (status, body) == (200, b"ok\n")
    status, headers, body = http_get(server, "/")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert b"<html" in body.lower()
    status, _, _ = http_get(server, "/nope")
    assert status == 404
    ws = client(server, "/anything")
    ws.send("still echoes")
    assert ws.recv(timeout=5) == "still echoes"


def test_origins(start_server: Start, client: Any) -> None:
    server = start_server(echo, origins=["https://good.example"])
    with pytest.raises(wscore.InvalidStatus) as info:
        connect(uri(server), origin="https://evil.example", open_timeout=5)
    assert info.value.status == 403
    with pytest.raises(wscore.InvalidStatus) as info:
        connect(uri(server), open_timeout=5)  # no Origin, not allowed
    assert info.value.status == 403
    ws = client(server, origin="https://good.example")
    ws.send("ok")
    assert ws.recv(timeout=5) == "ok"


def test_max_connections(start_server: Start, client: Any) -> None:
    release = threading.Event()

    def handler(ws: Any) -> None:
        ws.send("in")
        release.wait(5)

    server = start_server(handler, max_connections=2)
    first = client(server)
    second = client(server)
    assert first.recv(timeout=5) == "in"
    assert second.recv(timeout=5) == "in"
    with pytest.raises(wscore.InvalidStatus) as info:
        connect(uri(server), open_timeout=5)
    assert info.value.status == 503
    release.set()
    assert first.close_code is None
    for ws in (first, second):
        ws.close()
    # Once the handlers returned, there is room again.
    for _ in range(50):
        if not server._active:
            break
        threading.Event().wait(0.05)
    third = client(server)
    assert third.recv(timeout=5) == "in"


def test_handler_with_path(start_server: Start, client: Any) -> None:
    def handler(websocket: Any, path: str) -> None:
        websocket.send(path)

    server = start_server(handler)
    ws = client(server, "/chat/room1?x=1")
    assert ws.recv(timeout=5) == "/chat/room1"


def test_request_and_headers(start_server: Start, client: Any) -> None:
    def handler(ws: Any) -> None:
        ws.send(ws.request.headers["X-Token"])

    server = start_server(handler, extra_headers={"X-Server": "threaded"})
    ws = client(server, extra_headers=[("X-Token", "abc")])
    assert ws.recv(timeout=5) == "abc"
    assert ws.response.headers["X-Server"] == "threaded"


def test_tls(start_server: Start, client: Any, tls_contexts: tuple) -> None:
    server_ctx, client_ctx = tls_contexts
    server = start_server(echo, ssl=server_ctx, max_size=2**21)
    ws = client(f"wss://localhost:{server.port}/", ssl=client_ctx, max_size=2**21)
    ws.send("secret")
    assert ws.recv(timeout=5) == "secret"
    big = os.urandom(2**20)
    ws.send(big)
    assert ws.recv(timeout=10) == big
    ws.close()
    assert ws.close_code == 1000
    # A client that does not trust the certificate fails.
    with pytest.raises(OSError):
        connect(f"wss://localhost:{server.port}/", open_timeout=5)


def test_unix_socket(start_server: Start, client: Any, tmp_path: Any) -> None:
    path = str(tmp_path / "ws.sock")
    start_server(echo, unix_path=path)
    ws = client("ws://localhost/unix", unix_path=path)
    ws.send(b"\x00\x01")
    assert ws.recv(timeout=5) == b"\x00\x01"
    ws.close()
    assert ws.close_code == 1000


def test_connect_refused() -> None:
    import socket

    sock = socket.socket()
    sock.bind((HOST, 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(OSError):
        connect(f"ws://{HOST}:{port}/", open_timeout=2)


def test_open_timeout(client: Any) -> None:
    import socket

    listener = socket.socket()
    listener.bind((HOST, 0))
    listener.listen(1)
    try:
        with pytest.raises(TimeoutError):
            connect(f"ws://{HOST}:{listener.getsockname()[1]}/", open_timeout=0.3)
    finally:
        listener.close()


def test_no_thread_for_a_connection_answers_503(
    start_server: Start, client: Any, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    # The system may refuse a new thread (thread or memory limits): the client gets a
    # 503 at once instead of a connection nobody serves, and the server goes on.
    from transports.threaded import server as server_module

    server = start_server(echo)
    ws = client(server)  # its thread goes back to the pool after this connection
    ws.send("a")
    assert ws.recv(timeout=5) == "a"
    ws.close()
    for _ in range(100):  # wait until no pooled thread is left to take a connection
        if not server._active:
            break
        threading.Event().wait(0.05)
    with server._lock:
        idle, server._idle = server._idle, []
    for worker in idle:
        worker.wake.release()  # with no socket: the pooled thread exits

    def refuse(*args: Any) -> Any:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(server_module, "_start_thread", refuse)
    with pytest.raises(wscore.InvalidStatus) as info:
        connect(uri(server), open_timeout=5)
    assert info.value.status == 503
    assert b"cannot start a thread" in info.value.response.body
    assert "cannot start a thread" in caplog.text
    assert server._active == 0
    monkeypatch.undo()
    again = client(server)
    again.send("b")
    assert again.recv(timeout=5) == "b"


def test_max_connections_tls(start_server: Start, client: Any, tls_contexts: tuple) -> None:
    server_ctx, client_ctx = tls_contexts
    release = threading.Event()

    def handler(ws: Any) -> None:
        ws.send("in")
        release.wait(5)

    server = start_server(handler, ssl=server_ctx, max_connections=1)
    first = client(f"wss://localhost:{server.port}/", ssl=client_ctx)
    assert first.recv(timeout=5) == "in"
    with pytest.raises(wscore.InvalidStatus) as info:
        connect(f"wss://localhost:{server.port}/", ssl=client_ctx, open_timeout=5)
    assert info.value.status == 503
    release.set()


def test_frame_pipelined_behind_the_request(start_server: Start) -> None:
    import base64
    import socket

    got = []

    def handler(ws: Any) -> None:
        got.append(ws.recv(timeout=3))
        ws.send("ack")

    server = start_server(handler)
    key = base64.b64encode(os.urandom(16)).decode()
    mask, payload = os.urandom(4), b"early"
    frame = bytes([0x81, 0x80 | len(payload)]) + mask
    frame += bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    request = (
        f"GET / HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    with socket.create_connection((HOST, server.port), timeout=5) as sock:
        sock.sendall(request + frame)  # one segment: the frame follows the head
        data = b""
        while b"ack" not in data:
            chunk = sock.recv(4096)
            assert chunk, data
            data += chunk
    assert got == ["early"]


def test_frames_pipelined_behind_the_101() -> None:
    import socket

    listener = socket.socket()
    listener.bind((HOST, 0))
    listener.listen(1)
    done = threading.Event()

    def raw_server() -> None:
        sock, _ = listener.accept()
        with sock:
            request = b""
            while b"\r\n\r\n" not in request:
                request += sock.recv(4096)
            key = [
                line.split(b":", 1)[1].strip().decode()
                for line in request.split(b"\r\n")
                if line.lower().startswith(b"sec-websocket-key")
            ][0]
            sock.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                + wscore.accept_token(key).encode()
                + b"\r\n\r\n\x81\x05hello\x82\x02hi"
            )
            done.wait(5)

    thread = threading.Thread(target=raw_server, daemon=True)
    thread.start()
    try:
        ws = connect(f"ws://{HOST}:{listener.getsockname()[1]}/", open_timeout=5)
        assert ws.recv(timeout=5) == "hello"
        assert ws.recv(timeout=5) == b"hi"
        ws.abort()
    finally:
        done.set()
        listener.close()
        thread.join(5)


def test_server_open_timeout_and_oversized_head(start_server: Start) -> None:
    import socket
    import time

    server = start_server(echo, open_timeout=0.3)
    with socket.create_connection((HOST, server.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finished
        start = time.monotonic()
        assert sock.recv(1000) == b""
        assert time.monotonic() - start < 2
    with socket.create_connection((HOST, server.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 10000 + b"\r\n\r\n")
        assert sock.recv(1000).startswith(b"HTTP/1.1 431 ")
