"""What the threaded and asyncio transports share: options, hooks, the demo app.

Both transports take the same keyword options with the same defaults; this module
turns them into a :class:`wscore.Config` plus the transport's own knobs, and keeps
the small policies that must not drift apart between the two.
"""

from __future__ import annotations

import inspect
import logging
import os
import socket
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

from wscore import Config, InvalidConfig, Request, Response

__all__ = [
    "TransportOptions",
    "split_options",
    "wants_path",
    "HTTPAnswer",
    "normalize_answer",
    "NOT_WEBSOCKET",
    "demo_http",
    "defer_accept",
    "logger",
]

logger = logging.getLogger("transports")

#: Options that belong to the transport, not to the core, with their defaults.
TRANSPORT_DEFAULTS: Dict[str, Any] = {
    "max_queue": 16,  # incoming messages buffered before the socket stops being read
    "write_limit": 2**16,  # outgoing bytes buffered before send() waits
}

_CONFIG_FIELDS = set(Config.__dataclass_fields__)


class TransportOptions:
    """The transport's own options, validated."""

    __slots__ = ("max_queue", "write_limit")

    def __init__(self, max_queue: int, write_limit: int) -> None:
        if not isinstance(max_queue, int) or max_queue < 1:
            raise InvalidConfig(f"max_queue must be an int >= 1, got {max_queue!r}")
        if not isinstance(write_limit, int) or write_limit < 1:
            raise InvalidConfig(f"write_limit must be an int >= 1, got {write_limit!r}")
        self.max_queue = max_queue
        self.write_limit = write_limit


def split_options(options: Dict[str, Any]) -> Tuple[Config, TransportOptions]:
    """Split keyword options into a core :class:`Config` and :class:`TransportOptions`.

    ``extra_headers`` may be a dict or a list of pairs; unknown names raise
    :class:`~wscore.InvalidConfig` naming the option.
    """
    core: Dict[str, Any] = {}
    transport = dict(TRANSPORT_DEFAULTS)
    for name, value in options.items():
        if name in TRANSPORT_DEFAULTS:
            transport[name] = value
        elif name in _CONFIG_FIELDS:
            if name == "extra_headers" and isinstance(value, dict):
                value = list(value.items())
            core[name] = value
        else:
            known = sorted(_CONFIG_FIELDS | set(TRANSPORT_DEFAULTS))
            raise InvalidConfig(f"unknown option {name!r}; known options: {', '.join(known)}")
    settle_malloc()  # every server and client comes through here
    return Config(**core), TransportOptions(**transport)


_malloc_settled = False


def settle_malloc() -> None:
    """Move glibc's malloc thresholds up once, as its first free of a large block would.

    Reads are up to 256 KiB (asyncio, uvloop) and large frames are joined in one
    block. With glibc's starting thresholds (128 KiB) such blocks are mmapped, or
    the heap's top is given back with ``brk`` and faulted in again, read after
    read (1,884 ``brk`` calls in 2 s of 64 KiB messages). Freeing one 4 MiB block
    raises them for the life of the process (mmap 4 MiB, trim 8 MiB: up to 8 MiB
    of freed memory stays with the process). Measured (interleaved A/B, one
    core): server CPU per 64 KiB message -51% on uvloop, -14% on asyncio; per
    1 MiB message -33% on uvloop, -24% threaded. Other C libraries are left alone.
    """
    global _malloc_settled
    if _malloc_settled:
        return
    _malloc_settled = True
    try:
        glibc = os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not glibc
        return
    if glibc and glibc.startswith("glibc"):
        block = bytes(4 << 20)  # above the mmap threshold: mmapped, then unmapped
        del block


def defer_accept(listener: Any) -> None:
    """Have ``accept()`` on a TCP ``listener`` wait for the client's first bytes.

    Linux's ``TCP_DEFER_ACCEPT``: the connection is accepted once its request (or
    TLS hello) is in, or after 10-15 s. A client that sends nothing stays in the
    kernel. The threaded server then reads the request at once instead of waiting
    for it in its I/O loop (5% less CPU per sequential handshake, measured; no
    change measured on asyncio). Elsewhere: nothing.
    """
    option = getattr(socket, "TCP_DEFER_ACCEPT", None)
    if option is not None and listener.family in (socket.AF_INET, socket.AF_INET6):
        try:
            listener.setsockopt(socket.IPPROTO_TCP, option, 10)
        except OSError:  # pragma: no cover - refused by the system
            pass


def wants_path(handler: Callable[..., Any]) -> bool:
    """True if ``handler`` takes ``(connection, path)`` (the tutorial's old style)."""
    try:
        params = list(inspect.signature(handler).parameters.values())
    except (TypeError, ValueError):  # pragma: no cover - builtins
        return False
    positional = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    return len(positional) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in params)


#: What ``process_request`` may return to answer a request itself: a
#: :class:`wscore.Response`, or ``(status, body)``, or ``(status, body, headers)``.
HTTPAnswer = Union[Response, Tuple[int, Union[str, bytes]], Tuple[int, Union[str, bytes], Any]]


def normalize_answer(answer: Any) -> Tuple[int, Union[str, bytes], Sequence[Tuple[str, str]]]:
    """Turn what ``process_request`` returned into ``(status, body, headers)``."""
    if isinstance(answer, Response):
        return answer.status, answer.body, list(answer.headers)
    if isinstance(answer, tuple) and len(answer) in (2, 3):
        status, body = answer[0], answer[1]
        headers = answer[2] if len(answer) == 3 else ()
        if isinstance(headers, dict):
            headers = list(headers.items())
        return int(status), body, list(headers)
    raise TypeError(
        "process_request must return None, a wscore.Response, (status, body) "
        f"or (status, body, headers), not {answer!r}"
    )


#: The answer to a plain HTTP request when the application has no hook for it.
NOT_WEBSOCKET = (
    426,
    "This is a WebSocket server: connect with a WebSocket client (ws:// URI).\n",
    [("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")],
)

_DEMO_PAGE = Path(__file__).with_name("demo") / "index.html"


def demo_http(
    request: Request,
) -> Optional[Tuple[int, Union[str, bytes], Sequence[Tuple[str, str]]]]:
    """The demo server's HTTP side: ``/`` serves the page, ``/healthz`` answers 200."""
    if request.is_websocket:
        return None
    if request.path == "/healthz":
        return 200, "ok\n", [("Cache-Control", "no-store")]
    if request.path in ("/", "/index.html") and request.method in ("GET", "HEAD"):
        try:
            page = _DEMO_PAGE.read_bytes()
        except OSError:  # pragma: no cover - broken install
            return 500, "demo page missing from the installation\n", []
        return 200, page, [("Content-Type", "text/html; charset=utf-8")]
    return 404, f"no page at {request.path}; try / or /healthz\n", []
