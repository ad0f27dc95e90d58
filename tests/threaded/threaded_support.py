"""Helpers shared by the threaded transport tests (imported by name: keep it unique)."""

from __future__ import annotations

import time
from typing import Any, Callable

HOST = "127.0.0.1"


def echo(ws: Any) -> None:
    """The echo handler."""
    for message in ws:
        ws.send(message)


def uri(server: Any, path: str = "/") -> str:
    """The ws:// URI of a server listening on HOST."""
    return f"ws://{HOST}:{server.port}{path}"


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` seconds pass; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()
