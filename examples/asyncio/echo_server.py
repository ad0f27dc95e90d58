#!/usr/bin/env python
"""Echo server: every message goes back as it came, with ``async for``."""

import asyncio

from transports.asyncio import serve


async def echo(websocket):
    async for message in websocket:  # ends quietly when the client closes
        await websocket.send(message)


async def main():
    async with serve(echo, "localhost", 8765) as server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
