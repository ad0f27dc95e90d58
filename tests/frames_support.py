"""Raw WebSocket requests and frames for tests that talk to a server over a plain socket."""

from __future__ import annotations

import os
from typing import List

#: A valid WebSocket upgrade request head (fixed key), for raw-socket clients.
UPGRADE_REQUEST = (
    b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def masked_text(payload: bytes) -> bytes:
    """A client's text frame (payload under 126 bytes), masked with a random key."""
    key = os.urandom(4)
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + key + body


def unmasked_payloads(data: bytes) -> List[bytes]:
    """The payloads of the whole short unmasked frames at the start of ``data``."""
    out = []
    while len(data) >= 2:
        length = data[1] & 0x7F
        if len(data) < 2 + length:
            break
        out.append(data[2 : 2 + length])
        data = data[2 + length :]
    return out
