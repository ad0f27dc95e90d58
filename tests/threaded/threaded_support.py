"""Helpers shared by the threaded transport tests (imported by name: keep it unique)."""

from __future__ import annotations

from typing import Any

HOST = "127.0.0.1"


def echo(ws: Any) -> None:
    """The echo handler."""
    for message in ws:
        ws.send(message)


def uri(server: Any, path: str = "/") -> str:
    """The ws:// URI of a server listening on HOST."""
    return f"ws://{HOST}:{server.port}{path}"
