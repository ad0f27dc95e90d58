"""HTTP models: the opening request and the response, with case-insensitive headers."""

from __future__ import annotations

from typing import Dict, Iterable, Iterator, List, Optional, Tuple, Union
from urllib.parse import parse_qsl, urlsplit

__all__ = ["Headers", "Request", "Response", "HeadersLike"]

HeaderPair = Tuple[str, str]
_Text = Union[str, bytes]
HeadersLike = Union["Headers", Iterable[Tuple[_Text, _Text]], "dict[str, str]"]


def _text(value: Union[str, bytes]) -> str:
    return value.decode("latin-1") if isinstance(value, (bytes, bytearray)) else value


class Headers:
    """An ordered multi-map of HTTP headers with case-insensitive names.

    ``headers["Host"]`` gives the first value (``KeyError`` if absent),
    ``headers.get(name)`` the first or a default, ``headers.get_all(name)`` every value.
    Iterating gives ``(name, value)`` pairs in their original order and spelling.
    """

    __slots__ = ("_items", "_names")

    def __init__(self, items: Optional[HeadersLike] = None) -> None:
        self._items: List[HeaderPair] = []
        self._names: List[str] = []  # the names lower-cased, in step with _items
        if items is None:
            return
        pairs = items.items() if isinstance(items, dict) else items
        append_item, append_name = self._items.append, self._names.append
        for name, value in pairs:  # (what h11 parsed comes through wire_headers)
            if type(name) is not str:
                name = _text(name)
            if type(value) is not str:
                value = _text(value)
            append_item((name, value))
            append_name(name.lower())

    def get(self, name: str, default: Optional[str] = None) -> Optional[str]:
        """The first value of header ``name``, or ``default``."""
        try:
            return self._items[self._names.index(name.lower())][1]
        except ValueError:
            return default

    def get_all(self, name: str) -> List[str]:
        """Every value of header ``name``, in order."""
        lname = name.lower()
        return [item[1] for item, key in zip(self._items, self._names) if key == lname]

    def tokens(self, name: str) -> List[str]:
        """The comma-separated tokens of every value of ``name``, stripped."""
        return [
            token.strip()
            for value in self.get_all(name)
            for token in value.split(",")
            if token.strip()
        ]

    def add(self, name: str, value: str) -> None:
        """Append a header."""
        self._items.append((name, value))
        self._names.append(name.lower())

    def raw(self) -> List[Tuple[bytes, bytes]]:
        """The headers as ``(bytes, bytes)`` pairs, as h11 wants them."""
        return [(n.encode("latin-1"), v.encode("latin-1")) for n, v in self._items]

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[HeaderPair]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._items == other._items

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


# A server keeps every connection's request, headers included, for the handler.
# Most header names, and the values of the headers below, are the same from one
# connection to the next: decoded once and shared, they cost nothing per
# connection (~1.5 KiB each otherwise), and the next handshake skips the decoding.
# Both caches stop growing at _CACHE_SIZE entries (what is not cached is decoded).
_CACHE_SIZE = 512
_NAMES: Dict[bytes, Tuple[str, str]] = {}  # raw name: (name, lower-cased name)
_PAIRS: Dict[Tuple[bytes, bytes], Tuple[HeaderPair, str]] = {}  # raw pair: (pair, lower name)
_SHARED_VALUES = frozenset(
    {
        "host", "upgrade", "connection", "sec-websocket-version", "sec-websocket-extensions",
        "sec-websocket-protocol", "user-agent", "origin", "server", "pragma", "cache-control",
        "accept-encoding", "accept-language",
    }
)


def wire_headers(pairs: Iterable[Tuple[bytes, bytes]]) -> Headers:
    """:class:`Headers` from ``(bytes, bytes)`` pairs as received (h11's ``raw_items()``),
    sharing the strings of common names and values with earlier ones."""
    headers = Headers()
    append_item, append_name = headers._items.append, headers._names.append
    for pair in pairs:
        cached = _PAIRS.get(pair)
        if cached is None:
            raw_name, raw_value = pair
            names = _NAMES.get(raw_name)
            if names is None:
                name = raw_name.decode("latin-1")
                names = (name, name.lower())
                if len(_NAMES) < _CACHE_SIZE:
                    _NAMES[raw_name] = names
            cached = (names[0], raw_value.decode("latin-1")), names[1]
            if names[1] in _SHARED_VALUES and len(raw_value) <= 256 and len(_PAIRS) < _CACHE_SIZE:
                _PAIRS[pair] = cached
        append_item(cached[0])
        append_name(cached[1])
    return headers


class Request:
    """An HTTP request as received by a server (or sent by a client).

    ``is_websocket`` is true for a valid WebSocket upgrade request; such a request
    also lists the client's ``subprotocols`` and its ``origin``.
    """

    __slots__ = ("method", "target", "headers", "http_version", "is_websocket")

    def __init__(
        self,
        method: str,
        target: str,
        headers: Headers,
        http_version: str = "1.1",
        is_websocket: bool = False,
    ) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.http_version = http_version
        self.is_websocket = is_websocket

    @property
    def path(self) -> str:
        """The path of the target, without the query (``/chat`` for ``/chat?room=1``)."""
        return urlsplit(self.target).path

    @property
    def query(self) -> str:
        """The raw query string of the target, without ``?``."""
        return urlsplit(self.target).query

    @property
    def query_params(self) -> List[Tuple[str, str]]:
        """The query string parsed into ``(name, value)`` pairs."""
        return parse_qsl(self.query, keep_blank_values=True)

    @property
    def subprotocols(self) -> List[str]:
        """The subprotocols the client offers, in its order of preference."""
        return self.headers.tokens("Sec-WebSocket-Protocol")

    @property
    def origin(self) -> Optional[str]:
        """The ``Origin`` header, if any."""
        return self.headers.get("Origin")

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.target} websocket={self.is_websocket}>"


class Response:
    """An HTTP response: the 101 that opened a connection, or a rejection with its body."""

    __slots__ = ("status", "reason", "headers", "body")

    def __init__(self, status: int, headers: Headers, body: bytes = b"", reason: str = "") -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body

    @property
    def subprotocol(self) -> Optional[str]:
        """The subprotocol the server selected, if any."""
        return self.headers.get("Sec-WebSocket-Protocol")

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"
