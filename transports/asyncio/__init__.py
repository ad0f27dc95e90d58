"""The asyncio transport: ``serve()`` and ``connect()`` on an ``asyncio.Protocol``.

Works on any asyncio event loop, uvloop included::

    async def echo(websocket):
        async for message in websocket:
            await websocket.send(message)

    async with serve(echo, "localhost", 8765) as server:
        await server.serve_forever()
"""

from wscore import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
    State,
)

from .client import ClientConnection, connect
from .connection import Connection, broadcast
from .server import Server, ServerConnection, serve, serve_demo

__all__ = [
    "serve",
    "serve_demo",
    "Server",
    "connect",
    "Connection",
    "ServerConnection",
    "ClientConnection",
    "broadcast",
    "State",
    "ConnectionClosed",
    "ConnectionClosedOK",
    "ConnectionClosedError",
    "ConcurrencyError",
    "InvalidHandshake",
    "InvalidStatus",
    "InvalidURI",
]
