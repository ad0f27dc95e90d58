"""The exceptions of wscore and of both transports: one tree.

::

    WebSocketError
    ├── InvalidConfig             an option has a value it cannot take (also a ValueError)
    ├── InvalidURI                the URI is not a ws:// or wss:// URI (also a ValueError)
    ├── LocalProtocolError        the caller misused the API: the call is refused, nothing is sent
    │   └── InvalidState          the call is not allowed in the connection's current state
    ├── RemoteProtocolError       the peer broke the protocol; ``close_code`` is the code we sent
    │   └── PayloadTooBig         a message exceeded ``max_size`` (close code 1009)
    ├── InvalidHandshake          the opening handshake failed
    │   ├── InvalidStatus         the server answered with another status than 101
    │   └── InvalidHeader         a handshake header is missing or wrong
    ├── WebSocketTimeout          a deadline passed (also a TimeoutError)
    │   ├── OpenTimeout           the opening handshake did not finish within open_timeout
    │   ├── CloseTimeout          the peer did not answer our close within close_timeout
    │   └── KeepaliveTimeout      the peer did not answer a keepalive ping within ping_timeout
    ├── ConnectionClosed          raised by transports on recv/send once the connection is closed
    │   ├── ConnectionClosedOK    it closed normally (1000, 1001, or a close frame without a code)
    │   └── ConnectionClosedError it closed with an error, or without a close frame (1006)
    └── ConcurrencyError          two threads or tasks called recv() at the same time
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from ._http import Response

__all__ = [
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


class WebSocketError(Exception):
    """Base class of every exception raised by wscore and its transports."""


class InvalidConfig(WebSocketError, ValueError):
    """An option has a value it cannot take; the message names the option."""


class InvalidURI(WebSocketError, ValueError):
    """The URI given to a client is not a valid ws:// or wss:// URI."""

    def __init__(self, uri: str, why: str) -> None:
        super().__init__(f"{uri!r} is not a valid WebSocket URI: {why}")
        self.uri = uri


class LocalProtocolError(WebSocketError):
    """The caller misused the API; the call was refused and nothing was sent."""


class InvalidState(LocalProtocolError):
    """The operation is not allowed in the connection's current state."""


class RemoteProtocolError(WebSocketError):
    """The peer broke the protocol; we closed the connection with ``close_code``."""

    def __init__(self, message: str, close_code: int = 1002) -> None:
        super().__init__(message)
        self.close_code = close_code


class PayloadTooBig(RemoteProtocolError):
    """A message exceeded ``max_size``; raise ``max_size`` if such messages are legitimate."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 1009)


class InvalidHandshake(WebSocketError):
    """The opening handshake failed."""


class InvalidHeader(InvalidHandshake):
    """A handshake header is missing or has a wrong value.

    On the server side ``status`` is the HTTP status the request was answered with.
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class InvalidStatus(InvalidHandshake):
    """The server answered the opening handshake with ``response.status`` instead of 101."""

    def __init__(self, response: Response) -> None:
        body = response.body[:200].decode("utf-8", "replace").strip()
        detail = f": {body}" if body else ""
        super().__init__(f"server rejected WebSocket connection: HTTP {response.status}{detail}")
        self.response = response

    @property
    def status(self) -> int:
        """The HTTP status code of the rejection."""
        return self.response.status


class WebSocketTimeout(WebSocketError, TimeoutError):
    """A deadline of the connection passed."""


class OpenTimeout(WebSocketTimeout):
    """The opening handshake did not complete within ``open_timeout``."""


class CloseTimeout(WebSocketTimeout):
    """The peer did not answer our close frame within ``close_timeout``."""


class KeepaliveTimeout(WebSocketTimeout):
    """The peer did not answer a keepalive ping within ``ping_timeout``."""


class ConnectionClosed(WebSocketError):
    """The connection is closed: no more messages can be received or sent.

    ``code`` and ``reason`` are those of :class:`wscore.Closed`; ``error`` is what
    went wrong, if anything (a :class:`RemoteProtocolError`, a timeout...).
    """

    def __init__(self, code: int, reason: str = "", error: Optional[BaseException] = None):
        self.code = code
        self.reason = reason
        self.error = error
        text = f"connection closed: code {code}"
        if reason:
            text += f" ({reason})"
        if error is not None:
            text += f"; {error}"
        super().__init__(text)
        if error is not None:
            self.__cause__ = error


class ConnectionClosedOK(ConnectionClosed):
    """The connection closed normally (1000, 1001, or a close frame without a code)."""


class ConnectionClosedError(ConnectionClosed):
    """The connection closed with an error code, or dropped without a close frame (1006)."""


class ConcurrencyError(WebSocketError, RuntimeError):
    """Two threads or tasks tried to receive on one connection at the same time."""
