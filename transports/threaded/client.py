"""The threaded client: ``connect(uri)`` returns an open connection."""

from __future__ import annotations

import socket
import ssl as ssl_module
import time
from typing import Any, Optional, Sequence, Tuple

import wscore
from wscore import Closed, Opened

from .._common import split_options
from .connection import Connection
from .ioloop import client_loop

__all__ = ["connect", "ClientConnection"]


class ClientConnection(Connection):
    """A client connection; a context manager that closes on exit."""

    __slots__ = ()

    def __enter__(self) -> ClientConnection:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def connect(
    uri: str,
    *,
    ssl: Optional[ssl_module.SSLContext] = None,
    server_hostname: Optional[str] = None,
    unix_path: Optional[str] = None,
    sock: Optional[socket.socket] = None,
    origin: Optional[str] = None,
    extra_headers: Sequence[Tuple[str, str]] = (),
    **options: Any,
) -> ClientConnection:
    """Open a WebSocket connection to ``uri`` (``ws://`` or ``wss://``).

    Raises ``wscore.InvalidStatus`` if the server answers with another status than
    101 (it carries the status, headers and body), ``wscore.InvalidHandshake`` for
    other handshake failures, ``TimeoutError`` past ``open_timeout``, ``OSError``
    if the server cannot be reached. For ``wss://`` the default SSL context checks
    certificates; pass ``ssl=`` to change that. ``unix_path`` connects to a unix
    socket instead of the URI's host (the URI still gives the path and Host header).
    """
    if isinstance(extra_headers, dict):
        extra_headers = list(extra_headers.items())
    config, topts = split_options(options)
    wsuri = wscore.parse_uri(uri)
    if ssl is not None and not wsuri.secure:
        raise ValueError("connect() got an ssl context for a ws:// URI: use wss://")
    timeout = config.open_timeout
    deadline = None if timeout is None else time.monotonic() + timeout
    if sock is None:
        if unix_path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(unix_path)
        else:
            sock = socket.create_connection((wsuri.host, wsuri.port), timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if wsuri.secure:
        context = ssl if ssl is not None else ssl_module.create_default_context()
        sock.settimeout(timeout)
        sock = context.wrap_socket(sock, server_hostname=server_hostname or wsuri.host)
    core = wscore.ClientConnection(wsuri, config, origin=origin, extra_headers=extra_headers)
    conn = ClientConnection(sock, core, client_loop(), topts)
    try:
        events = conn._handshake_io(deadline)
    except BaseException:
        sock.close()
        raise
    opened = False
    for event in events:
        if isinstance(event, Opened):
            opened = True
        elif isinstance(event, Closed) and not opened:
            sock.close()
            if isinstance(event.error, wscore.OpenTimeout):
                raise TimeoutError(str(event.error)) from event.error
            assert event.error is not None
            raise event.error
    # Events after Opened (messages pipelined behind the 101) stay in the core's
    # queue order: put them back in front.
    conn._core._events[:0] = [e for e in events if not isinstance(e, Opened)]
    conn._start_io()
    return conn
