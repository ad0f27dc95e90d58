"""Helpers of the asyncio transport tests: the echo handler, URIs, raw HTTP, free ports."""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Dict, Tuple


async def echo(connection: Any) -> None:
    """The echo handler: every message back as it came."""
    async for message in connection:
        await connection.send(message)


def uri(server: Any, path: str = "/", scheme: str = "ws") -> str:
    """The URI of a test server listening on 127.0.0.1."""
    return f"{scheme}://127.0.0.1:{server.port}{path}"


async def http_request(
    port: int, head: str, host: str = "127.0.0.1"
) -> Tuple[int, Dict[str, str], bytes]:
    """Send a raw HTTP request head; return (status, headers, body) read until EOF."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(head.encode("latin-1"))
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    header_blob, _, body = data.partition(b"\r\n\r\n")
    lines = header_blob.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def upgrade_head(path: str = "/", extra: str = "") -> str:
    """A valid WebSocket upgrade request head."""
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        f"Sec-WebSocket-Version: 13\r\n{extra}\r\n"
    )


def free_port() -> int:
    """A TCP port free on 127.0.0.1 and ::1 right now (for programs with a fixed port)."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        try:
            with socket.socket(socket.AF_INET6) as sock6:
                sock6.bind(("::1", port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port")  # pragma: no cover
