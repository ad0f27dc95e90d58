#!/usr/bin/env python
"""Hello client: ask for a name, send it, print the server's answer."""

import asyncio

from transports.asyncio import connect


async def hello():
    async with connect("ws://localhost:8765") as websocket:
        name = input("What's your name? ")
        await websocket.send(name)
        print(f"> {name}")
        greeting = await websocket.recv()
        print(f"< {greeting}")


if __name__ == "__main__":
    asyncio.run(hello())
