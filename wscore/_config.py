"""Options: limits and timeouts with safe defaults, validated in one place."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional, Sequence, Tuple

from .errors import InvalidConfig

__all__ = ["Config", "DEFAULT_USER_AGENT"]

DEFAULT_USER_AGENT = "wscore/0.1"

_DEFLATE_KEYS = {
    "client_max_window_bits",
    "server_max_window_bits",
    "client_no_context_takeover",
    "server_no_context_takeover",
}


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything that tunes a connection. Every option has a safe default.

    Sizes are in bytes and durations in seconds; ``None`` disables a limit or a timer.

    - ``max_size``: largest incoming message, after decompression (1 MiB). Past it
      the connection closes with 1009, without buffering the rest.
    - ``streaming``: deliver :class:`~wscore.Fragment` events as data arrives instead
      of whole :class:`~wscore.Message` events (``max_size`` still applies).
    - ``compression``: ``"deflate"`` (permessage-deflate, RFC 7692) or ``None``.
    - ``deflate_options``: parameters of permessage-deflate (``client_max_window_bits``,
      ``server_max_window_bits``, ``client_no_context_takeover``,
      ``server_no_context_takeover``), offered by a client, accepted by a server.
    - ``ping_interval`` / ``ping_timeout``: keepalive: a ping every ``ping_interval``;
      no pong within ``ping_timeout`` closes the connection with 1011 (20 and 20).
    - ``close_timeout``: how long to wait for the peer's close frame (10).
    - ``open_timeout``: how long the opening handshake may take (10).
    - ``max_request_size`` / ``max_headers``: bounds of the HTTP head of a request
      (server) or response (client): 8 KiB and 128 headers; past them 431.
    - ``max_body_size``: how much of a rejection's body a client keeps (64 KiB).
    - ``subprotocols``: a client offers these; a server picks the first of its own
      list that the client offers.
    - ``origins``: server only: the allowed ``Origin`` values (``None`` in the list
      allows requests without one); others are answered 403. ``None``: no check.
    - ``extra_headers``: added to the request (client) or to the 101 response (server).
    - ``user_agent``: the ``User-Agent`` (client) or ``Server`` (server) header; ``None``
      leaves it out.
    """

    max_size: Optional[int] = 2**20
    streaming: bool = False
    compression: Optional[str] = "deflate"
    deflate_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    ping_interval: Optional[float] = 20.0
    ping_timeout: Optional[float] = 20.0
    close_timeout: Optional[float] = 10.0
    open_timeout: Optional[float] = 10.0
    max_request_size: int = 8192
    max_headers: int = 128
    max_body_size: int = 65536
    subprotocols: Sequence[str] = ()
    origins: Optional[Sequence[Optional[str]]] = None
    extra_headers: Sequence[Tuple[str, str]] = ()
    user_agent: Optional[str] = DEFAULT_USER_AGENT

    def __post_init__(self) -> None:
        if self.max_size is not None and (not isinstance(self.max_size, int) or self.max_size < 0):
            raise InvalidConfig(f"max_size must be None or an int >= 0, got {self.max_size!r}")
        if self.compression not in ("deflate", None):
            raise InvalidConfig(f"compression must be 'deflate' or None, got {self.compression!r}")
        unknown = set(self.deflate_options) - _DEFLATE_KEYS
        if unknown:
            raise InvalidConfig(
                f"unknown deflate_options {sorted(unknown)}; known: {sorted(_DEFLATE_KEYS)}"
            )
        for key in ("client_max_window_bits", "server_max_window_bits"):
            bits = self.deflate_options.get(key)
            if bits is not None and not (isinstance(bits, int) and 9 <= bits <= 15):
                raise InvalidConfig(f"deflate_options[{key!r}] must be 9 to 15, got {bits!r}")
        for name in ("ping_interval", "ping_timeout", "close_timeout", "open_timeout"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and value > 0):
                raise InvalidConfig(f"{name} must be None or a number > 0, got {value!r}")
        for name in ("max_request_size", "max_headers", "max_body_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise InvalidConfig(f"{name} must be an int > 0, got {value!r}")
        if isinstance(self.subprotocols, str):
            raise InvalidConfig("subprotocols must be a list of strings, not a string")
        if isinstance(self.origins, str):
            raise InvalidConfig("origins must be a list of strings, not a string")
        object.__setattr__(self, "subprotocols", tuple(self.subprotocols))
        if self.origins is not None:
            object.__setattr__(self, "origins", tuple(self.origins))
        object.__setattr__(self, "extra_headers", tuple(self.extra_headers))

    def replace(self, **changes: Any) -> Config:
        """A copy with some options changed (validated again)."""
        return dataclasses.replace(self, **changes)
