"""Interop with the ``websockets`` library's threading client and server."""

from __future__ import annotations

import os
import threading
from typing import Any, Callable

import pytest
from threaded_support import HOST, uri

from transports.threaded import ConnectionClosedError, ConnectionClosedOK, Server, connect

ws_client = pytest.importorskip("websockets.sync.client")
ws_server = pytest.importorskip("websockets.sync.server")

Start = Callable[..., Server]
PAYLOADS = [
    "hello",
    "",
    "ünïcödé 😀" * 1000,
    b"\x00\xff" * 10,
    b"",
    os.urandom(2**20),
    b"a" * 2**20,  # compresses well
    "b" * 2**20,
]


def extensions(headers: Any) -> str:
    return str(headers.get("Sec-WebSocket-Extensions", ""))


def test_websockets_client_to_threaded_server(start_server: Start) -> None:
    def handler(ws: Any) -> None:
        for message in ws:
            ws.send(message)
        # websockets closes with 1000: iteration ends quietly

    server = start_server(handler, max_size=2**21)
    with ws_client.connect(uri(server), max_size=2**21, open_timeout=5) as ws:
        assert "permessage-deflate" in extensions(ws.response.headers)
        for payload in PAYLOADS:
            ws.send(payload)
            assert ws.recv(timeout=10) == payload
        ws.send(["frag", "mented"])
        assert ws.recv(timeout=5) == "fragmented"
        ws.ping().wait(2)


def test_websockets_client_sees_close_codes(start_server: Start) -> None:
    from websockets.exceptions import ConnectionClosedError as WSClosedError

    def handler(ws: Any) -> None:
        ws.recv()
        raise RuntimeError("handler failure")

    server = start_server(handler)
    with ws_client.connect(uri(server), open_timeout=5) as ws:
        ws.send("boom")
        with pytest.raises(WSClosedError) as info:
            ws.recv(timeout=5)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1011


def test_threaded_client_to_websockets_server() -> None:
    def handler(ws: Any) -> None:
        for message in ws:
            if message == "close-4000":
                ws.close(4000, "asked")
                return
            ws.send(message)

    server = ws_server.serve(handler, HOST, 0, max_size=2**21)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.socket.getsockname()[1]
        with connect(f"ws://{HOST}:{port}/", max_size=2**21, open_timeout=5) as ws:
            assert "permessage-deflate" in extensions(ws.response.headers)
            for payload in PAYLOADS:
                ws.send(payload)
                assert ws.recv(timeout=10) == payload
            ws.send(iter([b"frag", b"mented"]))
            assert ws.recv(timeout=5) == b"fragmented"
            assert isinstance(ws.ping().wait(2), float)
        assert ws.close_code == 1000
        ws = connect(f"ws://{HOST}:{port}/", open_timeout=5, close_timeout=3)
        ws.send("close-4000")
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv(timeout=5)
        assert (info.value.code, info.value.reason) == (4000, "asked")
        with connect(f"ws://{HOST}:{port}/", open_timeout=5, compression=None) as ws:
            assert "permessage-deflate" not in extensions(ws.response.headers)
            ws.send("plain")
            assert ws.recv(timeout=5) == "plain"
        with pytest.raises(ConnectionClosedOK):
            ws.recv(timeout=1)
    finally:
        server.shutdown()
        thread.join(5)
