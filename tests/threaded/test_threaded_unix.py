"""The threaded server on a unix socket: its port, and the socket file's life."""

from __future__ import annotations

import os
import socket
from typing import Any

from threaded_support import echo

from transports.threaded import serve


def test_unix_server_port_and_socket_file(client: Any, tmp_path: Any) -> None:
    path = str(tmp_path / "ws.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)  # a socket file left by a server that died
    stale.close()
    server = serve(echo, unix_path=path)
    try:
        assert server.port is None
        ws = client("ws://localhost/", unix_path=path)
        ws.send("over unix")
        assert ws.recv(timeout=5) == "over unix"
        ws.close()
    finally:
        server.shutdown(timeout=5)
    assert not os.path.exists(path)  # removed on shutdown


def test_unix_path_that_is_not_a_socket_is_left_alone(tmp_path: Any) -> None:
    path = tmp_path / "ws.sock"
    path.write_text("not a socket")
    try:
        serve(echo, unix_path=str(path))
    except OSError:
        pass
    else:  # pragma: no cover - bind() must refuse an existing file
        raise AssertionError("bound over a regular file")
    assert path.read_text() == "not a socket"
