"""wscore: a sans-I/O WebSocket core (RFC 6455, RFC 7692) on wsproto and h11.

Bytes in, events and bytes out; the caller owns the socket, the threads or the
event loop, and the clock::

    conn = ServerConnection(Config(max_size=2**20))
    conn.receive_data(data)             # bytes from the socket; b"" at EOF
    for event in conn.events():         # RequestReceived, Message, Ping, Closed...
        ...
    sock.sendall(conn.data_to_send())   # everything to write, in one piece
    conn.handle_timers()                # when conn.next_deadline() has passed

It never imports socket, selectors, threading or asyncio.
"""

from ._config import Config
from ._connection import (
    ClientConnection,
    ServerConnection,
    State,
    WebSocketURI,
    accept_token,
    check_close_code,
    parse_uri,
)
from ._events import Closed, Event, Fragment, Message, Opened, Ping, Pong, RequestReceived
from ._http import Headers, Request, Response
from .errors import (
    CloseTimeout,
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidConfig,
    InvalidHandshake,
    InvalidHeader,
    InvalidState,
    InvalidStatus,
    InvalidURI,
    KeepaliveTimeout,
    LocalProtocolError,
    OpenTimeout,
    PayloadTooBig,
    RemoteProtocolError,
    WebSocketError,
    WebSocketTimeout,
)

__version__ = "0.1.0"

__all__ = [
    "Config",
    "ClientConnection",
    "ServerConnection",
    "State",
    "WebSocketURI",
    "accept_token",
    "check_close_code",
    "parse_uri",
    "Event",
    "RequestReceived",
    "Opened",
    "Message",
    "Fragment",
    "Ping",
    "Pong",
    "Closed",
    "Headers",
    "Request",
    "Response",
    "WebSocketError",
    "InvalidConfig",
    "InvalidURI",
    "LocalProtocolError",
    "InvalidState",
    "RemoteProtocolError",
    "PayloadTooBig",
    "InvalidHandshake",
    "InvalidStatus",
    "InvalidHeader",
    "WebSocketTimeout",
    "OpenTimeout",
    "CloseTimeout",
    "KeepaliveTimeout",
    "ConnectionClosed",
    "ConnectionClosedOK",
    "ConnectionClosedError",
    "ConcurrencyError",
]
