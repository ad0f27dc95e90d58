#!/usr/bin/env python
"""Hello server: receive a name, print it, answer, close (the tutorial's first server)."""

import asyncio

from transports.asyncio import serve


async def hello(websocket):
    name = await websocket.recv()
    print(f"< {name}", flush=True)
    greeting = f"Hello {name}! Message bien reçu."
    await websocket.send(greeting)
    print(f"> {greeting}", flush=True)


async def main():
    async with serve(hello, "localhost", 8765) as server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
