"""Stand-in for ``python -m transports serve``: a `websockets` echo server.

Same command line as our demo server (only the options run.py passes), so the
conformance harness can be validated against a known-good peer. Hidden behind
``run.py --stand-in``; not part of the library.
"""

from __future__ import annotations

import argparse
import asyncio
import signal


async def echo(ws) -> None:
    async for msg in ws:
        await ws.send(msg)


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--transport", default="asyncio")  # accepted, ignored
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--max-size", type=int, default=2**20)
    p.add_argument("--no-compression", action="store_true")
    a = p.parse_args()

    from websockets.asyncio.server import serve

    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.cancel)
    async with serve(
        echo,
        a.host,
        a.port,
        max_size=a.max_size,
        compression=None if a.no_compression else "deflate",
        ping_interval=None,
    ):
        print(f"listening on ws://{a.host}:{a.port}", flush=True)
        try:
            await stop
        except asyncio.CancelledError:
            pass


if __name__ == "__main__":
    asyncio.run(main())
