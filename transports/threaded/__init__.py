"""The threaded transport: blocking calls, a thread per connection, one I/O thread.

::

    from transports.threaded import serve

    def echo(websocket):
        for message in websocket:
            websocket.send(message)

    with serve(echo, "localhost", 8765) as server:
        server.serve_forever()
"""

from wscore import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidStatus,
    State,
)

from .client import ClientConnection, connect
from .connection import Connection, PongWaiter
from .server import Server, ServerConnection, broadcast, serve

__all__ = [
    "serve",
    "connect",
    "broadcast",
    "Server",
    "Connection",
    "ServerConnection",
    "ClientConnection",
    "PongWaiter",
    "State",
    "ConnectionClosed",
    "ConnectionClosedOK",
    "ConnectionClosedError",
    "ConcurrencyError",
    "InvalidHandshake",
    "InvalidStatus",
]
