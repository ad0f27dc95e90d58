#!/usr/bin/env python
"""Chat room: every message goes to everyone connected, with ``broadcast``.

Try it with two terminals: ``python -m transports connect ws://localhost:8765``.
"""

import asyncio

from transports.asyncio import broadcast, serve

CLIENTS = set()


async def chat(websocket):
    CLIENTS.add(websocket)
    broadcast(CLIENTS, f"{len(CLIENTS)} here")
    try:
        async for message in websocket:
            broadcast(CLIENTS, message)  # never waits on a slow client: it skips it
    finally:
        CLIENTS.discard(websocket)
        broadcast(CLIENTS, f"{len(CLIENTS)} here")


async def main():
    async with serve(chat, "localhost", 8765) as server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
