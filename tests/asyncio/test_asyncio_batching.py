"""Answers to a batch of received messages leave in one write, over real sockets."""

from __future__ import annotations

import asyncio
from typing import Any, List

import pytest
from asyncio_support import upgrade_head
from frames_support import masked_text, unmasked_payloads

from transports.asyncio import serve


class _CountingTransport:
    """The connection's transport, with the sizes of its writes recorded (uvloop's
    transport takes no new attributes, so it is wrapped, not patched)."""

    def __init__(self, transport: Any, writes: List[int]) -> None:
        self._transport = transport
        self._writes = writes

    def write(self, data: bytes) -> None:
        self._writes.append(len(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


@pytest.mark.parametrize("max_queue", [16, 4])
def test_echoes_of_one_read_share_one_write(run: Any, max_queue: int) -> None:
    # 64 messages in one read: the queue is refilled from the core 3 to 15 times
    # while the handler goes through them; the answers still share one write.
    writes: List[int] = []

    async def handler(ws: Any) -> None:
        ws._transport = _CountingTransport(ws._transport, writes)
        async for message in ws:
            await ws.send(message)

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0, compression=None, max_queue=max_queue) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(upgrade_head().encode())
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101")
            messages = [f"message {i}".encode() for i in range(64)]
            writer.write(b"".join(masked_text(m) for m in messages))  # one segment
            received = b""
            while len(unmasked_payloads(received)) < 64:
                received += await asyncio.wait_for(reader.read(65536), 5)
            assert unmasked_payloads(received) == messages  # all of them, in order
            # One write per message would be 64; a batch read in one go answers in
            # one write (two if the first echo went out before the rest was parsed).
            assert 1 <= len(writes) <= 3, writes
            writes.clear()
            writer.write(masked_text(b"alone"))  # a lone message is answered at once
            assert unmasked_payloads(await asyncio.wait_for(reader.read(65536), 5)) == [b"alone"]
            assert len(writes) == 1
            writer.close()

    run(main())
