"""In-memory helpers: a client and a server connection wired to each other."""

from __future__ import annotations

import base64
import os
from typing import List, Optional, Sequence, Tuple

import wscore
from wscore import ClientConnection, Closed, Config, Fragment, Message, ServerConnection


class Clock:
    """A manual clock: ``clock()`` reads it, ``clock.advance(dt)`` moves it."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = [now]

    def __call__(self) -> float:
        return self.now[0]

    def advance(self, dt: float) -> float:
        self.now[0] += dt
        return self.now[0]


class Pair:
    """A client and a server connection; ``deliver()`` moves bytes between them."""

    def __init__(
        self,
        client_config: Optional[Config] = None,
        server_config: Optional[Config] = None,
        uri: str = "ws://example.com/",
        clock: Optional[Clock] = None,
        accept: bool = True,
        **client_kwargs: object,
    ) -> None:
        self.clock = clock if clock is not None else Clock()
        self.client = ClientConnection(
            uri, client_config, clock=self.clock, **client_kwargs  # type: ignore[arg-type]
        )
        self.server = ServerConnection(server_config, clock=self.clock)
        self.client_events: List[wscore.Event] = []
        self.server_events: List[wscore.Event] = []
        #: The client's opening request.
        self.handshake = self.client.data_to_send()
        if accept:
            self.server.receive_data(self.handshake)
            events = self.server.events()
            assert len(events) == 1 and isinstance(events[0], wscore.RequestReceived), events
            assert events[0].request.is_websocket
            self.server.accept()
            self.to_client()
            events = self.client.events()
            assert len(events) == 1 and isinstance(events[0], wscore.Opened), events
            assert self.client.state is wscore.State.OPEN
            assert self.server.state is wscore.State.OPEN

    def to_server(self) -> bytes:
        """Move the client's pending bytes to the server; return them."""
        data = self.client.data_to_send()
        if data:
            self.server.receive_data(data)
        return data

    def to_client(self) -> bytes:
        data = self.server.data_to_send()
        if data:
            self.client.receive_data(data)
        return data

    def deliver(self) -> None:
        """Move bytes both ways until neither side has anything to send."""
        for _ in range(20):
            if not (self.to_server() or self.to_client()):
                return
        raise AssertionError("endless exchange")

    def send_to_server(self, *args: object, **kwargs: object) -> List[wscore.Event]:
        self.client.send(*args, **kwargs)  # type: ignore[arg-type]
        self.to_server()
        return self.server.events()

    def send_to_client(self, *args: object, **kwargs: object) -> List[wscore.Event]:
        self.server.send(*args, **kwargs)  # type: ignore[arg-type]
        self.to_client()
        return self.client.events()


def handshake_request(
    headers: Sequence[Tuple[str, str]] = (),
    *,
    method: str = "GET",
    target: str = "/",
    version: str = "HTTP/1.1",
    key: Optional[str] = None,
    defaults: bool = True,
) -> bytes:
    """A raw opening request; ``headers`` are added after the usual ones."""
    lines = [f"{method} {target} {version}"]
    if defaults:
        if key is None:
            key = base64.b64encode(os.urandom(16)).decode()
        lines += [
            "Host: example.com",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def server_with(request: bytes, config: Optional[Config] = None, **kw: object) -> ServerConnection:
    server = ServerConnection(config, **kw)  # type: ignore[arg-type]
    server.receive_data(request)
    return server


def parse_response(data: bytes) -> Tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-cased names; last wins) and body of a raw response."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0,
          mask: Optional[bytes] = b"\x01\x02\x03\x04") -> bytes:
    """A raw frame; masked with ``mask`` (client to server) unless it is ``None``."""
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    length = len(payload)
    maskbit = 0x80 if mask is not None else 0
    if length <= 125:
        header = bytes([first, maskbit | length])
    elif length <= 0xFFFF:
        header = bytes([first, maskbit | 126]) + length.to_bytes(2, "big")
    else:
        header = bytes([first, maskbit | 127]) + length.to_bytes(8, "big")
    if mask is None:
        return header + payload
    stream = (mask * (length // 4 + 1))[:length]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(
        length, "big"
    )
    return header + mask + masked


def closed(events: Sequence[wscore.Event]) -> wscore.Closed:
    """The last event, which must be a Closed."""
    assert events, "no events"
    last = events[-1]
    assert isinstance(last, wscore.Closed), events
    return last


def normalise(events: Sequence[wscore.Event], drop_partial_on_close: bool = False) -> List[object]:
    """Merge consecutive fragments (their boundaries depend on the cuts).

    Closed events compare by code and error type. With ``drop_partial_on_close``
    the fragments of a message that failed are dropped: how much of it streamed
    out before the error depends on the cuts.
    """
    out: List[object] = []
    pending: List[object] = []
    for event in events:
        if isinstance(event, Fragment):
            pending.append(event.data)
            if event.final:
                out.append(("message", pending[0][:0].join(pending)))  # type: ignore[index]
                pending = []
        elif isinstance(event, Message):
            out.append(("message", event.data))
        elif isinstance(event, Closed):
            if drop_partial_on_close:
                pending = []
            out.append(("closed", event.code, type(event.error)))
        else:
            out.append(event)
    if pending:
        out.append(("partial", pending[0][:0].join(pending)))  # type: ignore[index]
    return out
