"""Events: what the core tells the caller after ``receive_data``.

Small immutable-by-convention objects with ``__slots__`` (they are created once per
message, so they stay cheap). Compare them with ``==``; ``repr`` shows their fields.
"""

from __future__ import annotations

from typing import Any, ClassVar, Optional, Tuple, Union

from ._http import Request, Response
from .errors import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK

__all__ = [
    "Event",
    "RequestReceived",
    "Opened",
    "Message",
    "Fragment",
    "Ping",
    "Pong",
    "Closed",
]

Data = Union[str, bytes]


class Event:
    """Base class of the events."""

    __slots__: ClassVar[Tuple[str, ...]] = ()

    def _fields(self) -> Tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._fields() == other._fields()  # type: ignore[attr-defined,unused-ignore]

    def __hash__(self) -> int:
        return hash((type(self), self._fields()))

    def __repr__(self) -> str:
        body = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__)
        return f"{type(self).__name__}({body})"


class RequestReceived(Event):
    """Server: a complete HTTP request arrived.

    If ``request.is_websocket``, answer with ``accept()`` or ``respond()``;
    otherwise it is a plain HTTP request (a health check, a page): ``respond()``.
    """

    __slots__ = ("request",)

    def __init__(self, request: Request) -> None:
        self.request = request


class Opened(Event):
    """Client: the server accepted the opening handshake; the connection is OPEN."""

    __slots__ = ("response",)

    def __init__(self, response: Response) -> None:
        self.response = response


class Message(Event):
    """A whole message: ``str`` for a text message, ``bytes`` for a binary one."""

    __slots__ = ("data",)

    def __init__(self, data: Data) -> None:
        self.data = data


class Fragment(Event):
    """Streaming mode: a piece of a message; ``final`` marks the last piece."""

    __slots__ = ("data", "final")

    def __init__(self, data: Data, final: bool) -> None:
        self.data = data
        self.final = final


class Ping(Event):
    """The peer sent a ping; the core has already queued the pong."""

    __slots__ = ("payload",)

    def __init__(self, payload: bytes) -> None:
        self.payload = payload


class Pong(Event):
    """The peer sent a pong.

    ``acknowledged`` lists the payloads of our pings that it answers (a pong also
    answers every earlier ping); ``latency`` is the round trip of the matching ping
    in seconds, or ``None`` for an unsolicited pong.
    """

    __slots__ = ("payload", "acknowledged", "latency")

    def __init__(
        self, payload: bytes, acknowledged: Tuple[bytes, ...] = (), latency: Optional[float] = None
    ) -> None:
        self.payload = payload
        self.acknowledged = acknowledged
        self.latency = latency


class Closed(Event):
    """The connection is CLOSED; no event follows. Close the transport once sent out.

    ``code`` is the close code the peer sent, or the one we sent when we closed
    because of an error (1002, 1007, 1009, 1011...), or 1006 when the connection
    ended without a close frame. ``error`` says what went wrong, or is ``None``.
    """

    __slots__ = ("code", "reason", "error")

    def __init__(self, code: int, reason: str = "", error: Optional[BaseException] = None):
        self.code = code
        self.reason = reason
        self.error = error

    @property
    def clean(self) -> bool:
        """True when both close frames went through (any code): nothing can follow
        the peer's, so a server may close TCP at once, without lingering."""
        return self.error is None and self.code != 1006

    @property
    def ok(self) -> bool:
        """True for a normal closure (1000, 1001 or 1005) without an error."""
        return self.error is None and self.code in (1000, 1001, 1005)

    def exception(self) -> ConnectionClosed:
        """The exception a transport raises for this closure (``...OK`` when :attr:`ok`)."""
        cls = ConnectionClosedOK if self.ok else ConnectionClosedError
        return cls(self.code, self.reason, self.error)
