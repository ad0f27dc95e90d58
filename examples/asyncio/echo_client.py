#!/usr/bin/env python
"""Echo client: send each command-line argument, print what comes back."""

import asyncio
import sys

from transports.asyncio import connect


async def main(messages):
    async with connect("ws://localhost:8765") as websocket:
        for message in messages:
            await websocket.send(message)
            print(await websocket.recv())


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:] or ["hello"]))
