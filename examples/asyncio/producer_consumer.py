#!/usr/bin/env python
"""Producer and consumer at once: a clock ticks to the client while its messages are read.

Two asyncio tasks share the connection; when either ends (the client left), the other
is cancelled.
"""

import asyncio
import datetime

from transports.asyncio import serve


async def consumer(websocket):
    async for message in websocket:
        print(f"< {message}", flush=True)


async def producer(websocket):
    while True:
        await websocket.send(datetime.datetime.now().isoformat(timespec="seconds"))
        await asyncio.sleep(1)


async def handler(websocket):
    tasks = [asyncio.create_task(consumer(websocket)), asyncio.create_task(producer(websocket))]
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()


async def main():
    async with serve(handler, "localhost", 8765) as server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
