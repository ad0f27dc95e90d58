"""The connection state machine: bytes in, events and bytes out.

Everything that changes the connection's state lives here. The states::

    CONNECTING --accept()/101--> OPEN --close() sent--> CLOSING --close received--> CLOSED
        |                          |                       |
        +--respond()/error/EOF-----+--close received,------+--timeout/EOF-----------> CLOSED
                                      protocol error, EOF

A :class:`ServerConnection` starts by reading an HTTP request (h11); a
:class:`ClientConnection` starts by writing one. Once OPEN both frame with wsproto
(see ``_framing``). Every method returns at once: the caller moves the bytes
(``receive_data`` / ``data_to_send``) and the time (``handle_timers``).
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import http
import os
import time
from typing import Callable, Iterable, List, Optional, Sequence, Tuple, Union
from urllib.parse import urlsplit

import h11
from wsproto.extensions import Extension
from wsproto.frame_protocol import Opcode, ParseFailed

from ._config import Config
from ._events import (
    Closed,
    Event,
    Fragment,
    Message,
    Opened,
    Ping,
    Pong,
    RequestReceived,
)
from ._framing import BoundedDeflate, Framer
from ._http import Headers, Request, Response, wire_headers
from .errors import (
    CloseTimeout,
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
)

__all__ = [
    "State",
    "ServerConnection",
    "ClientConnection",
    "WebSocketURI",
    "parse_uri",
    "check_close_code",
]

Clock = Callable[[], float]
Data = Union[str, bytes]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_TEXT, _BINARY, _PING, _PONG, _CLOSE = (
    Opcode.TEXT,
    Opcode.BINARY,
    Opcode.PING,
    Opcode.PONG,
    Opcode.CLOSE,
)
_MAX_PINGS = 64  # pings awaiting a pong; older ones are forgotten


class State(enum.IntEnum):
    """The connection's state (RFC 6455, section 4 and 7)."""

    CONNECTING = 0
    OPEN = 1
    CLOSING = 2
    CLOSED = 3


def accept_token(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` value for a ``Sec-WebSocket-Key``."""
    digest = hashlib.sha1(key.encode("ascii") + _GUID).digest()
    return base64.b64encode(digest).decode("ascii")


def check_close_code(code: int, reason: str = "") -> bytes:
    """Check a close code and reason we are about to send; return the encoded reason."""
    if not (code in (1000, 1001, 1002, 1003) or 1007 <= code <= 1014 or 3000 <= code <= 4999):
        raise LocalProtocolError(
            f"close code {code} cannot be sent: use 1000-1003, 1007-1014 or 3000-4999"
        )
    encoded = reason.encode("utf-8")
    if len(encoded) > 123:
        raise LocalProtocolError(
            f"close reason is {len(encoded)} bytes in UTF-8; at most 123 fit in a close frame"
        )
    return encoded


class WebSocketURI:
    """A parsed ``ws://`` or ``wss://`` URI."""

    __slots__ = ("secure", "host", "port", "resource", "user_info")

    def __init__(
        self, secure: bool, host: str, port: int, resource: str, user_info: Optional[str]
    ) -> None:
        self.secure = secure
        self.host = host
        self.port = port
        self.resource = resource
        self.user_info = user_info

    @property
    def host_header(self) -> str:
        """The value of the ``Host`` header for this URI."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.secure else 80
        return host if self.port == default else f"{host}:{self.port}"

    def __repr__(self) -> str:
        scheme = "wss" if self.secure else "ws"
        return f"WebSocketURI('{scheme}://{self.host_header}{self.resource}')"


def parse_uri(uri: str) -> WebSocketURI:
    """Parse a ``ws://`` or ``wss://`` URI; raise :class:`~wscore.errors.InvalidURI`."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError as exc:
        raise InvalidURI(uri, str(exc)) from None
    if parts.scheme not in ("ws", "wss"):
        raise InvalidURI(uri, "the scheme must be ws or wss")
    if not parts.hostname:
        raise InvalidURI(uri, "there is no host")
    if parts.fragment:
        raise InvalidURI(uri, "a WebSocket URI cannot have a fragment")
    secure = parts.scheme == "wss"
    resource = parts.path or "/"
    if parts.query:
        resource += "?" + parts.query
    user_info = None
    if parts.username is not None:
        user_info = f"{parts.username}:{parts.password or ''}"
    return WebSocketURI(
        secure, parts.hostname, port or (443 if secure else 80), resource, user_info
    )


_NO_LIMIT = 1 << 62  # room for messages when max_pending_messages is None


def _head_size(event: Union[h11.Request, h11.Response, h11.InformationalResponse]) -> int:
    """The size of an HTTP head as h11 parsed it (a lower bound of the bytes on the wire).

    h11 bounds only heads that arrive in pieces (``max_incomplete_event_size``); a
    head that arrives whole in one ``receive_data`` needs this check too.
    """
    if isinstance(event, h11.Request):
        size = len(event.method) + len(event.target) + 12  # "M T HTTP/1.1\r\n"
    else:
        size = len(event.reason) + 15  # "HTTP/1.1 101 R\r\n"
    return size + sum(len(name) + len(value) + 4 for name, value in event.headers.raw_items()) + 2


class _Connection:
    """What servers and clients share: framing, messages, control frames, timers."""

    # Slots: an instance dict costs ~1.5 KiB per connection.
    __slots__ = (
        "_clock", "_close_deadline", "_close_sent", "_deflate", "_events", "_failure",
        "_failure_deadline", "_framer", "_keepalive", "_open_deadline", "_out", "_out_size",
        "_parts", "_pending_messages", "_ping_due", "_pings", "_pong_deadline", "_stalled",
        "close_code", "close_error", "close_reason", "config", "extensions", "latency",
        "max_pending_messages", "request", "response", "state", "subprotocol"
    )

    _is_client = False

    def __init__(self, config: Optional[Config], clock: Optional[Clock]) -> None:
        self.config = config if config is not None else Config()
        self._clock: Clock = clock if clock is not None else time.monotonic
        #: The connection's :class:`State`.
        self.state = State.CONNECTING
        #: The opening request (sent by a client, received by a server), once known.
        self.request: Optional[Request] = None
        #: The opening response (received by a client, sent by a server), once known.
        self.response: Optional[Response] = None
        #: The negotiated subprotocol, if any.
        self.subprotocol: Optional[str] = None
        #: The negotiated extensions (wsproto objects).
        self.extensions: List[Extension] = []
        #: The close code, reason and error, once CLOSED (see :class:`Closed`).
        self.close_code: Optional[int] = None
        self.close_reason: Optional[str] = None
        self.close_error: Optional[BaseException] = None
        #: Round trip of the latest answered ping, in seconds.
        self.latency: Optional[float] = None
        self._out: List[Union[bytes, bytearray]] = []
        self._out_size = 0
        self._events: List[Event] = []
        #: The most message events (``Message`` or ``Fragment``) to parse ahead of
        #: the caller: past it the remaining bytes stay buffered, unparsed, until
        #: :meth:`events` is called again (see :attr:`more_buffered`). ``None``
        #: parses everything received. Bounds memory when a small read inflates
        #: into many large messages (permessage-deflate).
        #:
        #: Setting it also holds back protocol errors while OPEN: the peer's
        #: messages before a bad frame come out first and can still be answered
        #: (see :attr:`failure_pending`).
        self.max_pending_messages: Optional[int] = None
        self._pending_messages = 0
        self._stalled = False
        # A protocol error held back (code, reason, error), and when it fails at the latest.
        self._failure: Optional[Tuple[int, str, RemoteProtocolError]] = None
        self._failure_deadline: Optional[float] = None
        self._framer: Optional[Framer] = None
        self._deflate: Optional[BoundedDeflate] = None
        self._parts: List[Data] = []
        self._close_sent: Optional[int] = None
        self._pings: dict[bytes, float] = {}
        self._keepalive: Optional[bytes] = None
        now = self._clock()
        timeout = self.config.open_timeout
        self._open_deadline: Optional[float] = None if timeout is None else now + timeout
        self._ping_due: Optional[float] = None
        self._pong_deadline: Optional[float] = None
        self._close_deadline: Optional[float] = None

    # -- the three verbs ------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes received from the peer; ``b""`` means the peer closed its side."""
        if not data:
            self._receive_eof()
        elif self.state is State.OPEN or self.state is State.CLOSING:
            self._receive_frames(data)
        elif self.state is State.CONNECTING:
            self._receive_handshake(data)
        # CLOSED: whatever comes after the end is ignored.

    def events(self) -> List[Event]:
        """The events since the last call, oldest first.

        With :attr:`max_pending_messages` set, parsing that stopped at the limit
        goes on here, up to the limit, once the events parsed so far were taken:
        one call never returns more than ``max_pending_messages`` messages. A
        protocol error held back (:attr:`failure_pending`) fails the connection
        here, once every event before it was returned.
        """
        limit = self.max_pending_messages
        if (
            self._stalled
            and self.state is not State.CLOSED
            and (limit is None or self._pending_messages < limit)
        ):
            self._parse()
        if self._failure is not None and not self._events:
            self._fail_pending()
        events = self._events
        if events:
            self._events = []
            self._pending_messages = 0
        return events

    @property
    def more_buffered(self) -> bool:
        """True if parsing stopped at :attr:`max_pending_messages` with data left,
        or at a protocol error held back (see :attr:`failure_pending`).

        Call :meth:`events` again once there is room: it parses on (or fails the
        connection). Until then the caller should stop reading its socket, so
        that TCP pushes back.
        """
        return self._stalled or self._failure is not None

    @property
    def failure_pending(self) -> bool:
        """True if the next :meth:`events` call fails the connection.

        With :attr:`max_pending_messages` set, a protocol error found while OPEN
        (a reserved bit or opcode, a continuation frame with nothing to continue,
        invalid UTF-8, a message over ``max_size``...) does not fail the
        connection at once: it is held back, the connection stays OPEN (``send``
        works) and what the peer sends after it is dropped unparsed.
        :meth:`events` returns the events before the error first; once they are
        all returned this is True, and the next :meth:`events` call fails the
        connection: the close frame (1002, 1007, 1009...) goes out after
        everything sent so far, then :class:`Closed` comes with the error. So
        the application can still answer the messages before a bad frame, as
        the Autobahn testsuite expects (the echoes, then the close frame).

        A transport holds that call until the application asks for a message
        and none is left. :meth:`close` and the peer's EOF fail it too, and so
        does :meth:`handle_timers`: ``close_timeout`` seconds after the error at
        the latest, or as soon as a keepalive pong is overdue (the caller
        stopped reading). With ``close_timeout=None`` and no keepalive, an
        application that never asks for a message again leaves it pending, as
        it would leave a close frame unread behind a full queue.
        """
        return self._failure is not None and not self._events

    def data_to_send(self) -> bytes:
        """Everything waiting to be written to the peer, as one ``bytes``; then empty."""
        out = self._out
        if not out:
            return b""
        data = b"".join(out)  # no copy for a single bytes object
        self._out = []
        self._out_size = 0
        return data

    @property
    def bytes_to_send(self) -> int:
        """How many bytes ``data_to_send()`` would return (for backpressure)."""
        return self._out_size

    # -- sending --------------------------------------------------------------

    def send(self, data: Union[Data, bytearray, memoryview], final: bool = True) -> None:
        """Send a text (``str``) or binary (bytes-like) message, or one fragment of it.

        With ``final=False`` the message goes on with the next ``send`` calls, which
        must carry the same type, until one has ``final=True``.
        """
        if self.state is not State.OPEN:
            raise self._cannot("send")
        framer = self._framer
        assert framer is not None
        try:
            frame = framer.send_data(data, final)  # type: ignore[arg-type]
        except TypeError as exc:
            raise LocalProtocolError(
                f"cannot send {type(data).__name__}: {exc} (send str for text, "
                "bytes for binary, and the same type for every fragment of a message)"
            ) from None
        self._out.append(frame)
        self._out_size += len(frame)

    def send_fragments(self, fragments: Iterable[Union[Data, bytearray, memoryview]]) -> None:
        """Send a message in fragments, one frame each (all ``str`` or all bytes-like)."""
        previous: Optional[Data] = None
        started = False
        for fragment in fragments:
            if started:
                self.send(previous, final=False)  # type: ignore[arg-type]
            previous = fragment  # type: ignore[assignment]
            started = True
        if not started:
            raise LocalProtocolError("send_fragments() needs at least one fragment")
        self.send(previous, final=True)  # type: ignore[arg-type]

    def ping(self, payload: Optional[bytes] = None) -> bytes:
        """Send a ping; return its payload (random if not given) to match the pong.

        The :class:`Pong` that answers it lists the payload in ``acknowledged`` and
        carries the round-trip ``latency``.
        """
        if self.state is not State.OPEN:
            raise self._cannot("ping")
        if payload is None:
            payload = os.urandom(4)
            while payload in self._pings:  # pragma: no cover - 1 in 2**32
                payload = os.urandom(4)
        elif payload in self._pings:
            raise LocalProtocolError("a ping with this payload is already waiting for a pong")
        assert self._framer is not None
        frame = self._framer.ping(bytes(payload))  # raises ValueError past 125 bytes
        if len(self._pings) >= _MAX_PINGS:  # forget the oldest, but not the keepalive
            oldest = next(key for key in self._pings if key != self._keepalive)
            del self._pings[oldest]
        self._pings[bytes(payload)] = self._clock()
        self._write(frame)
        return bytes(payload)

    def pong(self, payload: bytes = b"") -> None:
        """Send an unsolicited pong (pings are answered automatically)."""
        if self.state is not State.OPEN:
            raise self._cannot("pong")
        assert self._framer is not None
        self._write(self._framer.pong(payload))

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake (or give up a handshake still CONNECTING).

        Idempotent: closing a CLOSING or CLOSED connection does nothing. With a
        protocol error pending (:attr:`failure_pending`) it fails the connection
        instead: the peer gets that error's close code.
        """
        check_close_code(code, reason)
        if self._failure is not None:
            self._fail_pending()
        elif self.state is State.OPEN:
            self._send_close(code, reason)
            self.state = State.CLOSING
            self._ping_due = self._pong_deadline = None
            timeout = self.config.close_timeout
            self._close_deadline = None if timeout is None else self._clock() + timeout
        elif self.state is State.CONNECTING:
            self._set_closed(1006, "closed during the opening handshake", None)

    def fail(self, code: int, reason: str = "", error: Optional[BaseException] = None) -> None:
        """Close at once: send a close frame if still possible, and go to CLOSED."""
        if self.state is State.OPEN:
            check_close_code(code, reason)
            self._send_close(code, reason)
        if self.state is not State.CLOSED:
            self._set_closed(code if self._close_sent is not None else 1006, reason, error)

    # -- timers ---------------------------------------------------------------

    def next_deadline(self) -> Optional[float]:
        """When ``handle_timers`` should next be called (clock time), or ``None``."""
        # Unrolled: transports ask after every read, and a loop over a tuple
        # costs twice as much.
        best = self._ping_due
        deadline = self._pong_deadline
        if deadline is not None and (best is None or deadline < best):
            best = deadline
        deadline = self._open_deadline
        if deadline is not None and (best is None or deadline < best):
            best = deadline
        deadline = self._close_deadline
        if deadline is not None and (best is None or deadline < best):
            best = deadline
        deadline = self._failure_deadline
        if deadline is not None and (best is None or deadline < best):
            best = deadline
        return best

    def handle_timers(self, now: Optional[float] = None) -> None:
        """Act on every deadline that has passed at ``now`` (default: the clock)."""
        if now is None:
            now = self._clock()
        state = self.state
        if state is State.CONNECTING:
            if self._open_deadline is not None and now >= self._open_deadline:
                timeout = self.config.open_timeout
                self._set_closed(
                    1006, "", OpenTimeout(f"opening handshake not done within {timeout}s")
                )
        elif state is State.CLOSING:
            if self._close_deadline is not None and now >= self._close_deadline:
                timeout = self.config.close_timeout
                self._set_closed(
                    1006, "", CloseTimeout(f"peer did not answer close within {timeout}s")
                )
        elif state is State.OPEN:
            pong_due = self._pong_deadline is not None and now >= self._pong_deadline
            if self._failure is not None and (
                pong_due or (self._failure_deadline is not None and now >= self._failure_deadline)
            ):
                # The peer's protocol error, not a keepalive ping we stopped reading the pong of.
                self._fail_pending()
            elif pong_due:
                timeout = self.config.ping_timeout
                self.fail(
                    1011,
                    "keepalive ping timeout",
                    KeepaliveTimeout(f"no pong within ping_timeout ({timeout}s)"),
                )
            elif self._ping_due is not None and now >= self._ping_due:
                interval = self.config.ping_interval
                assert interval is not None
                self._keepalive = self.ping()
                self._ping_due = now + interval
                timeout = self.config.ping_timeout
                if timeout is not None and self._pong_deadline is None:
                    self._pong_deadline = now + timeout

    # -- internals ------------------------------------------------------------

    def _write(self, data: Union[bytes, bytearray]) -> None:
        self._out.append(data)
        self._out_size += len(data)

    def _cannot(self, what: str) -> InvalidState:
        if self.state is State.CONNECTING:
            why = "the opening handshake is not complete"
        elif self.state is State.CLOSING:
            why = "the connection is closing"
        else:
            why = "the connection is closed"
        return InvalidState(f"cannot {what}: {why} (state {self.state.name})")

    def _send_close(self, code: int, reason: str) -> None:
        assert self._framer is not None
        self._write(self._framer.close(code, reason))
        self._close_sent = code

    def _open(self, extensions: List[Extension]) -> None:
        self.state = State.OPEN
        self.extensions = extensions
        config = self.config
        self._framer = Framer(
            self._is_client, extensions, config.max_size, whole_frames=not config.streaming
        )
        self._open_deadline = None
        if self.config.ping_interval is not None:
            self._ping_due = self._clock() + self.config.ping_interval

    def _set_closed(self, code: int, reason: str, error: Optional[BaseException]) -> None:
        self.state = State.CLOSED
        self._stalled = False
        self.close_code = code
        self.close_reason = reason
        self.close_error = error
        self._open_deadline = self._ping_due = self._pong_deadline = self._close_deadline = None
        self._failure = self._failure_deadline = None
        self._parts = []
        if self._framer is not None:
            self._framer.release()
        self._events.append(Closed(code, reason, error))

    def _receive_eof(self) -> None:
        if self.state is State.CONNECTING:
            self._eof_during_handshake()
        elif self._failure is not None:
            self._fail_pending()
        elif self.state is not State.CLOSED:
            self._set_closed(1006, "", None)

    def _eof_during_handshake(self) -> None:
        self._set_closed(
            1006, "", InvalidHandshake("connection closed during the opening handshake")
        )

    def _receive_handshake(self, data: bytes) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _receive_frames(self, data: bytes) -> None:
        if self._failure is not None:
            return  # after a protocol error: nothing more is parsed
        framer = self._framer
        assert framer is not None
        limit = self.max_pending_messages
        if limit is not None and self._pending_messages >= limit:
            framer.receive_bytes(data)
            self._stalled = True  # the caller has not taken the messages parsed so far
            return
        self._parse(data)

    def _parse(self, data: Optional[bytes] = None) -> None:
        """Parse ``data``, or without it what is buffered, into events, stopping at
        ``max_pending_messages`` messages."""
        framer = self._framer
        assert framer is not None
        # Whole messages first, without the general path's per-frame machinery.
        events = self._events
        count = len(events)
        limit = self.max_pending_messages
        room = _NO_LIMIT if limit is None else limit - self._pending_messages
        emit = self._new_fragment if self.config.streaming else self._new_message
        if data is None:
            more = framer.resume_messages(room, emit)
        else:
            more = framer.read_messages(data, room, emit)
        if limit is not None:
            self._pending_messages += len(events) - count
            if self._pending_messages >= limit:
                self._stalled = more
                return
        if more:
            self._parse_frames()

    def _new_message(self, data: Data) -> None:
        self._events.append(Message(data))

    def _new_fragment(self, data: Data) -> None:
        self._events.append(Fragment(data, True))

    def _parse_frames(self) -> None:
        """The general path: frame by frame, control frames, fragments, errors."""
        framer = self._framer
        assert framer is not None
        events = self._events
        parts = self._parts
        streaming = self.config.streaming
        limit = self.max_pending_messages
        self._stalled = False
        append = events.append
        new_message = Message
        next_frame = framer.next_frame
        decoder = framer.decoder
        received = decoder.buffer.buffer  # wsproto's bytearray, changed in place
        try:
            while True:
                frame = next_frame()
                if frame is None:
                    break
                opcode = frame.opcode
                if opcode is _TEXT or opcode is _BINARY:
                    payload = frame.payload
                    if streaming:
                        if not (payload or frame.message_finished):
                            continue
                        append(Fragment(payload, frame.message_finished))  # type: ignore[arg-type]
                    elif frame.message_finished:
                        if parts:
                            parts.append(payload)  # type: ignore[arg-type]
                            payload = ("" if opcode is _TEXT else b"").join(parts)  # type: ignore[arg-type]
                            parts.clear()
                        append(new_message(payload))  # type: ignore[arg-type]
                    else:
                        parts.append(payload)  # type: ignore[arg-type]
                        continue
                    if limit is not None:
                        self._pending_messages += 1
                        if self._pending_messages >= limit:
                            # The rest stays in wsproto's buffer, if there is a rest.
                            self._stalled = framer.buffered > 0
                            return
                    if decoder._chunk is None and not received and decoder._large is None:
                        break  # every byte was parsed: skip the call that would find none
                elif opcode is _PING:
                    payload = bytes(frame.payload)  # type: ignore[arg-type]
                    if self.state is State.OPEN:
                        self._write(framer.pong(payload))
                    events.append(Ping(payload))
                elif opcode is _PONG:
                    events.append(self._receive_pong(bytes(frame.payload)))  # type: ignore[arg-type]
                else:  # _CLOSE (continuation frames come out as _TEXT or _BINARY)
                    code, reason = frame.payload  # type: ignore[str-unpack]
                    self._receive_close(int(code), str(reason))
                    return
        except ParseFailed as exc:
            message = str(exc)
            deflate = self._deflate
            if deflate is not None and deflate.error is not None:
                message = deflate.error
            code = int(exc.code)
            error = PayloadTooBig(message) if code == 1009 else RemoteProtocolError(message, code)
            if self.max_pending_messages is not None and self.state is State.OPEN:
                # Hold it back: see failure_pending.
                self._failure = (code, message[:123], error)
                timeout = self.config.close_timeout
                self._failure_deadline = None if timeout is None else self._clock() + timeout
            else:
                self.fail(code, message[:123], error)

    def _fail_pending(self) -> None:
        assert self._failure is not None
        self.fail(*self._failure)  # clears it

    def _receive_pong(self, payload: bytes) -> Pong:
        pings = self._pings
        if payload not in pings:
            return Pong(payload)
        keys = list(pings)
        acknowledged = tuple(keys[: keys.index(payload) + 1])  # a pong answers earlier pings
        self.latency = self._clock() - pings[payload]
        for key in acknowledged:
            del pings[key]
        if self._keepalive in acknowledged:
            self._keepalive = None
            self._pong_deadline = None
        return Pong(payload, acknowledged, self.latency)

    def _receive_close(self, code: int, reason: str) -> None:
        if self.state is State.OPEN:
            assert self._framer is not None
            if code == 1005:
                self._write(self._framer.close())
            else:
                self._write(self._framer.close(code))
            self._close_sent = code
        self._set_closed(code, reason, None)


class ServerConnection(_Connection):
    """The server side of one connection, from the HTTP request on.

    Feed the request with ``receive_data``; a :class:`RequestReceived` event follows.
    Answer a WebSocket request with :meth:`accept` (or refuse it with :meth:`respond`),
    and a plain HTTP request with :meth:`respond`. Requests that are not valid
    WebSocket handshakes, or too large, are answered by the core itself (400, 403,
    426, 431) and end with a :class:`Closed` event whose ``error`` says why.
    """

    __slots__ = ("_early", "_h11")

    def __init__(self, config: Optional[Config] = None, *, clock: Optional[Clock] = None):
        super().__init__(config, clock)
        #: HTTP until the handshake ends (then dropped: it is kilobytes per connection).
        self._h11: Optional[h11.Connection] = h11.Connection(
            h11.SERVER, max_incomplete_event_size=self.config.max_request_size
        )
        self._early = 0  # bytes received after the request, before accept()

    def _receive_handshake(self, data: bytes) -> None:
        conn = self._h11
        assert conn is not None  # CONNECTING
        if self.request is not None:
            # Waiting for accept()/respond(): keep early frames, within a bound.
            self._early += len(data)
            if self._early > (self.config.max_size or 2**20) + 65536:
                self._set_closed(
                    1006, "", RemoteProtocolError("too much data before the handshake ended")
                )
                return
            conn.receive_data(data)
            return
        conn.receive_data(data)
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint
            if status == 431:
                message = (
                    f"request head larger than max_request_size "
                    f"({self.config.max_request_size} bytes)"
                )
            else:
                message = f"malformed HTTP request: {exc}"
            self._refuse(status, message)
            return
        if isinstance(event, h11.Request):
            self._receive_request(event)
        # NEED_DATA: wait for more.

    def _receive_eof(self) -> None:
        if self.state is State.CONNECTING and self.request is None:
            self._set_closed(
                1006, "", InvalidHandshake("connection closed before a complete request")
            )
        else:
            super()._receive_eof()

    def _refuse(self, status: int, message: str, headers: Sequence[Tuple[str, str]] = ()) -> None:
        """Answer a bad handshake with ``status`` and a text body, then close."""
        try:
            self._write_response(status, (message + "\n").encode(), headers)
        except h11.LocalProtocolError:  # pragma: no cover - h11 refuses to answer at all
            pass
        self._set_closed(1006, "", InvalidHeader(message, status))

    def _receive_request(self, event: h11.Request) -> None:
        headers = wire_headers(event.headers.raw_items())  # as sent (h11 lower-cases names)
        request = Request(
            event.method.decode("ascii", "replace"),
            event.target.decode("ascii", "replace"),
            headers,
            event.http_version.decode("ascii"),
        )
        self.request = request
        if _head_size(event) > self.config.max_request_size:
            self._refuse(
                431,
                f"request head larger than max_request_size ({self.config.max_request_size} bytes)",
            )
            return
        if len(headers) > self.config.max_headers:
            self._refuse(431, f"more than {self.config.max_headers} headers")
            return
        if "websocket" not in (t.lower() for t in headers.tokens("Upgrade")):
            self._events.append(RequestReceived(request))  # plain HTTP
            return
        problem = self._check_upgrade(request)
        if problem is not None:
            self._refuse(*problem)
            return
        origins = self.config.origins
        if origins is not None and request.origin not in origins:
            self._refuse(403, f"origin {request.origin!r} is not allowed")
            return
        request.is_websocket = True
        self._events.append(RequestReceived(request))

    @staticmethod
    def _check_upgrade(
        request: Request,
    ) -> Optional[Tuple[int, str, Sequence[Tuple[str, str]]]]:
        headers = request.headers
        if request.method != "GET":
            return 400, f"WebSocket handshake must use GET, not {request.method}", ()
        if request.http_version != "1.1":
            return 400, f"WebSocket handshake needs HTTP/1.1, not {request.http_version}", ()
        if "upgrade" not in (t.lower() for t in headers.tokens("Connection")):
            return 400, "missing 'Connection: Upgrade' header", ()
        versions = headers.get_all("Sec-WebSocket-Version")
        if versions != ["13"]:
            found = ", ".join(versions) or "none"
            return (
                426,
                f"unsupported WebSocket version {found}: this server speaks 13",
                (("Sec-WebSocket-Version", "13"),),
            )
        keys = headers.get_all("Sec-WebSocket-Key")
        if len(keys) != 1:
            return 400, "missing or repeated Sec-WebSocket-Key header", ()
        try:
            raw = base64.b64decode(keys[0].encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            raw = b""
        if len(raw) != 16:
            return 400, "Sec-WebSocket-Key must be 16 bytes in base64", ()
        return None

    def _pending_request(self, what: str) -> Request:
        if self.state is not State.CONNECTING or self.request is None:
            raise InvalidState(f"cannot {what}: no request is waiting for an answer")
        return self.request

    def accept(
        self,
        subprotocol: Optional[str] = None,
        extra_headers: Sequence[Tuple[str, str]] = (),
    ) -> None:
        """Accept the WebSocket request: write the 101 response; the connection is OPEN.

        ``subprotocol`` must be one the client offered; by default the first of
        ``config.subprotocols`` that the client offers is chosen (none if no match).
        permessage-deflate is negotiated when ``config.compression`` allows it.
        """
        request = self._pending_request("accept")
        if not request.is_websocket:
            raise InvalidState("cannot accept a plain HTTP request: use respond()")
        if subprotocol is not None:
            offered = request.subprotocols
            if subprotocol not in offered:
                raise LocalProtocolError(
                    f"subprotocol {subprotocol!r} was not offered by the client ({offered})"
                )
        elif self.config.subprotocols:
            offered = request.subprotocols
            subprotocol = next((p for p in self.config.subprotocols if p in offered), None)
        response_headers = Headers(
            [
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Accept", accept_token(request.headers["Sec-WebSocket-Key"])),
            ]
        )
        if subprotocol is not None:
            response_headers.add("Sec-WebSocket-Protocol", subprotocol)
        extensions: List[Extension] = []
        if self.config.compression == "deflate":
            deflate, answer = self._negotiate_deflate(request)
            if deflate is not None:
                extensions.append(deflate)
                self._deflate = deflate
                response_headers.add("Sec-WebSocket-Extensions", answer)
        if self.config.user_agent:
            response_headers.add("Server", self.config.user_agent)
        for name, value in (*self.config.extra_headers, *extra_headers):
            response_headers.add(name, value)
        conn = self._h11
        assert conn is not None  # CONNECTING
        self._write(
            conn.send(
                h11.InformationalResponse(
                    status_code=101, headers=response_headers.raw(), reason=b"Switching Protocols"
                )
            )
            or b""
        )
        self.subprotocol = subprotocol
        self.response = Response(101, response_headers, reason="Switching Protocols")
        trailing = conn.trailing_data[0]
        self._h11 = None
        self._open(extensions)
        if trailing:
            self._receive_frames(trailing)

    def _negotiate_deflate(self, request: Request) -> Tuple[Optional[BoundedDeflate], str]:
        """Accept the first permessage-deflate offer that we can honour."""
        for offer in request.headers.tokens("Sec-WebSocket-Extensions"):
            name = offer.split(";", 1)[0].strip()
            if name != "permessage-deflate":
                continue
            options = dict(self.config.deflate_options)
            if "client_max_window_bits" not in offer:
                # The client did not say it can shrink its window: it compresses
                # with 15 bits whatever we prefer, so we must inflate with 15.
                options.pop("client_max_window_bits", None)
            deflate = BoundedDeflate(self.config.max_size, **options)
            try:
                answer = deflate.accept(offer)
            except ValueError:  # a malformed parameter value
                continue
            if answer is None or not _valid_deflate_params(offer):
                continue
            text = answer if isinstance(answer, str) else ""
            return deflate, "permessage-deflate" + ("; " + text if text else "")
        return None, ""

    def respond(
        self,
        status: int,
        body: Union[str, bytes] = b"",
        headers: Sequence[Tuple[str, str]] = (),
    ) -> None:
        """Answer the request with an HTTP response (not 101), then close.

        Refuses a WebSocket request, or serves a plain HTTP one (a health check, a
        page). A ``str`` body is sent as UTF-8 text; ``Content-Type`` defaults to
        ``text/plain; charset=utf-8``.
        """
        self._pending_request("respond")
        if not 200 <= status <= 599:
            raise LocalProtocolError(f"status {status} cannot answer a request: use 200-599")
        if isinstance(body, str):
            body = body.encode("utf-8")
        self._write_response(status, body, headers)
        self._set_closed(1006, f"HTTP {status}", None)

    def _write_response(self, status: int, body: bytes, headers: Sequence[Tuple[str, str]]) -> None:
        response = Headers(headers)
        if "Content-Type" not in response:
            response.add("Content-Type", "text/plain; charset=utf-8")
        response.add("Content-Length", str(len(body)))
        response.add("Connection", "close")
        if self.config.user_agent and "Server" not in response:
            response.add("Server", self.config.user_agent)
        conn = self._h11
        assert conn is not None  # CONNECTING
        try:
            phrase = http.HTTPStatus(status).phrase.encode("ascii")
        except ValueError:
            phrase = b""
        data = (
            conn.send(h11.Response(status_code=status, headers=response.raw(), reason=phrase))
            or b""
        )
        if body:
            data += conn.send(h11.Data(data=body)) or b""
        data += conn.send(h11.EndOfMessage()) or b""
        self._write(data)
        self.response = Response(status, response, body)


def _valid_deflate_params(offer: str) -> bool:
    """Reject offers with unknown or repeated parameters (RFC 7692, section 5)."""
    seen = set()
    known = {
        "client_max_window_bits",
        "server_max_window_bits",
        "client_no_context_takeover",
        "server_no_context_takeover",
    }
    for param in offer.split(";")[1:]:
        name, _, value = param.strip().partition("=")
        name = name.strip()
        if name not in known or name in seen:
            return False
        seen.add(name)
        value = value.strip().strip('"')
        if name.endswith("no_context_takeover") and value:
            return False
        if name == "server_max_window_bits" and not value:
            return False
        if value and not (value.isdigit() and 8 <= int(value) <= 15):
            return False
    return True


class ClientConnection(_Connection):
    """The client side of one connection: writes the opening request at once.

    ``data_to_send()`` holds the request right after construction. Feed the
    server's answer with ``receive_data``: an :class:`Opened` event follows, or a
    :class:`Closed` event whose ``error`` is an :class:`~wscore.errors.InvalidStatus`
    (with the status, headers and body) or :class:`~wscore.errors.InvalidHeader`.
    """

    __slots__ = ("_h11", "_key", "_rejection", "uri")

    _is_client = True

    def __init__(
        self,
        uri: Union[str, WebSocketURI],
        config: Optional[Config] = None,
        *,
        origin: Optional[str] = None,
        extra_headers: Sequence[Tuple[str, str]] = (),
        clock: Optional[Clock] = None,
    ) -> None:
        super().__init__(config, clock)
        self.uri = parse_uri(uri) if isinstance(uri, str) else uri
        config = self.config
        self._key = base64.b64encode(os.urandom(16)).decode("ascii")
        headers = Headers(
            [
                ("Host", self.uri.host_header),
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Key", self._key),
                ("Sec-WebSocket-Version", "13"),
            ]
        )
        if config.subprotocols:
            headers.add("Sec-WebSocket-Protocol", ", ".join(config.subprotocols))
        if config.compression == "deflate":
            headers.add("Sec-WebSocket-Extensions", self._deflate_offer())
        if origin is not None:
            headers.add("Origin", origin)
        if self.uri.user_info is not None:
            token = base64.b64encode(self.uri.user_info.encode("utf-8")).decode("ascii")
            headers.add("Authorization", f"Basic {token}")
        if config.user_agent:
            headers.add("User-Agent", config.user_agent)
        for name, value in (*config.extra_headers, *extra_headers):
            headers.add(name, value)
        self.request = Request("GET", self.uri.resource, headers, "1.1", True)
        conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=config.max_request_size)
        #: HTTP until the handshake ends (then dropped: it is kilobytes per connection).
        self._h11: Optional[h11.Connection] = conn
        self._write(
            conn.send(
                h11.Request(method="GET", target=self.uri.resource, headers=headers.raw())
            )
            or b""
        )
        self._rejection: Optional[Response] = None

    def _deflate_offer(self) -> str:
        options = self.config.deflate_options
        params = ["permessage-deflate"]
        if options.get("server_no_context_takeover"):
            params.append("server_no_context_takeover")
        if options.get("client_no_context_takeover"):
            params.append("client_no_context_takeover")
        if options.get("server_max_window_bits"):
            params.append(f"server_max_window_bits={options['server_max_window_bits']}")
        bits = options.get("client_max_window_bits")
        params.append(f"client_max_window_bits={bits}" if bits else "client_max_window_bits")
        return "; ".join(params)

    def _receive_handshake(self, data: bytes) -> None:
        conn = self._h11
        assert conn is not None  # CONNECTING
        conn.receive_data(data)
        while True:  # every branch that ends the handshake returns
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                self._set_closed(1006, "", InvalidHandshake(f"invalid HTTP response: {exc}"))
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, (h11.InformationalResponse, h11.Response)):
                config = self.config
                if _head_size(event) > config.max_request_size:
                    problem = f"response head larger than {config.max_request_size} bytes"
                elif len(event.headers) > config.max_headers:
                    problem = f"response with more than {config.max_headers} headers"
                else:
                    problem = ""
                if problem:
                    self._set_closed(1006, "", InvalidHandshake(problem))
                    return
            if isinstance(event, h11.InformationalResponse):
                if event.status_code == 101:
                    self._receive_101(event)
                    return
            elif isinstance(event, h11.Response):
                self._rejection = Response(
                    event.status_code,
                    wire_headers(event.headers.raw_items()),
                    b"",
                    event.reason.decode("latin-1"),
                )
            elif isinstance(event, h11.Data):
                rejection = self._rejection
                assert rejection is not None
                room = self.config.max_body_size - len(rejection.body)
                if room > 0:
                    rejection.body += bytes(event.data[:room])
            else:  # h11.EndOfMessage or h11.ConnectionClosed
                self._rejected()
                return

    def _eof_during_handshake(self) -> None:
        if self._rejection is not None:
            self._rejected()
        else:
            super()._eof_during_handshake()

    def _rejected(self) -> None:
        assert self._rejection is not None
        self.response = self._rejection
        self._set_closed(1006, "", InvalidStatus(self._rejection))

    def _receive_101(self, event: h11.InformationalResponse) -> None:
        headers = wire_headers(event.headers.raw_items())
        response = Response(101, headers, b"", event.reason.decode("latin-1"))
        self.response = response
        problem = self._check_101(headers)
        if isinstance(problem, str):
            self._set_closed(1006, "", InvalidHeader(problem, 101))
            return
        self.subprotocol = headers.get("Sec-WebSocket-Protocol")
        self._deflate = problem
        self._open([problem] if problem is not None else [])
        self._events.append(Opened(response))
        conn = self._h11
        assert conn is not None  # the 101 came through it
        trailing = conn.trailing_data[0]
        self._h11 = None
        if trailing:
            self._receive_frames(trailing)

    def _check_101(self, headers: Headers) -> Union[str, BoundedDeflate, None]:
        """Validate the 101 response: a problem as text, else the deflate extension or None."""
        if "websocket" not in (t.lower() for t in headers.tokens("Upgrade")):
            return "101 response without 'Upgrade: websocket'"
        if "upgrade" not in (t.lower() for t in headers.tokens("Connection")):
            return "101 response without 'Connection: Upgrade'"
        if headers.get_all("Sec-WebSocket-Accept") != [accept_token(self._key)]:
            return "101 response with a wrong or missing Sec-WebSocket-Accept"
        chosen = headers.get_all("Sec-WebSocket-Protocol")
        if chosen:
            if len(chosen) > 1 or chosen[0] not in self.config.subprotocols:
                return f"server chose subprotocol {', '.join(chosen)!r}, which was not offered"
        accepted = headers.tokens("Sec-WebSocket-Extensions")
        if not accepted:
            return None
        if len(accepted) > 1 or accepted[0].split(";")[0].strip() != "permessage-deflate":
            return f"server accepted extensions we did not offer: {', '.join(accepted)}"
        if self.config.compression != "deflate" or not _valid_deflate_params(accepted[0]):
            return f"server answered with an invalid extension: {accepted[0]}"
        deflate = BoundedDeflate(self.config.max_size, **self.config.deflate_options)
        try:
            deflate.finalize(accepted[0])
        except ValueError as exc:
            return f"server answered with invalid deflate parameters: {exc}"
        return deflate
