"""Echo server on the `websockets` library: interop peer, and stand-in for our CLI server.

    python tests/interop/websockets_peer.py [--host 127.0.0.1] [--port 0] [--max-size BYTES]
                                            [--no-compression] [--certfile F --keyfile F]

It takes the options of ``python -m transports serve`` that the interop tests use, and behaves
like it: it prints ``listening on ws://HOST:PORT`` once it accepts connections, echoes every
message with its type kept, serves the demo page (transports/demo/index.html) on ``GET /`` and
``200 ok`` on ``GET /healthz``. It also obeys the same ``__cmd__`` text commands as
ws_echo_server.js (info, ping, close, frag), so that our clients can be driven against it.
It stops on SIGTERM/SIGINT or when its stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import ssl
import sys
from http import HTTPStatus
from pathlib import Path
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

DEMO_PAGE = Path(__file__).resolve().parents[2] / "transports" / "demo" / "index.html"


def pattern(kind: str, size: int) -> bytes:
    """The bytes that ``__cmd__ frag`` sends (same as ws_echo_server.js)."""
    if kind == "text":
        data = "é".encode() * (size // 2)
        return data + (b"a" if size % 2 else b"")
    return bytes(i % 251 for i in range(251)) * (size // 251) + bytes(range(size % 251))


def fragments(kind: str, n: int, size: int) -> list[bytes]:
    data = pattern(kind, size)
    step = max(1, -(-size // n) | 1)  # odd step: cuts inside "é"
    parts = [data[i : i + step] for i in range(0, size, step)]
    while len(parts) < n:
        parts.append(b"")
    return parts


async def command(ws: ServerConnection, words: list[str]) -> None:
    cmd = words[1] if len(words) > 1 else ""
    if cmd == "info":
        ext = ws.response.headers.get("Sec-WebSocket-Extensions", "") if ws.response else ""
        info = {"extensions": ext, "protocol": ws.subprotocol or "", "path": ws.request.path
                if ws.request else None, "lastPing": None}
        await ws.send(json.dumps(info))
    elif cmd == "ping":
        payload = " ".join(words[2:])
        waiter = await ws.ping(payload.encode())
        await asyncio.wait_for(waiter, 10)
        await ws.send("pong " + payload)
    elif cmd == "close":
        await ws.close(int(words[2]), " ".join(words[3:]))
    elif cmd == "frag":
        kind, n, size = words[2], int(words[3]), int(words[4])
        await ws.send(fragments(kind, n, size), text=(kind == "text"))
    else:
        await ws.send("error unknown command " + cmd)


async def echo(ws: ServerConnection) -> None:
    try:
        async for message in ws:
            if isinstance(message, str) and message.startswith("__cmd__ "):
                await command(ws, message.split(" "))
            else:
                await ws.send(message)
    except ConnectionClosed:
        pass


def process_request(connection: ServerConnection, request: Any) -> Any:
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return None
    if request.path == "/healthz":
        return connection.respond(HTTPStatus.OK, "ok\n")
    if request.path in ("/", "/index.html"):
        response = connection.respond(HTTPStatus.OK, "")
        body = DEMO_PAGE.read_bytes()
        response.body = body
        del response.headers["Content-Type"]
        del response.headers["Content-Length"]
        response.headers["Content-Type"] = "text/html; charset=utf-8"
        response.headers["Content-Length"] = str(len(body))
        return response
    return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--max-size", type=int, default=2**20)
    parser.add_argument("--no-compression", action="store_true")
    parser.add_argument("--certfile")
    parser.add_argument("--keyfile")
    args = parser.parse_args()
    ssl_context = None
    if args.certfile:
        ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ssl_context.load_cert_chain(args.certfile, args.keyfile)

    stop = asyncio.get_running_loop().create_future()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))

    def watch_stdin() -> None:
        try:
            while sys.stdin.buffer.read(65536):
                pass
        except (OSError, ValueError):
            pass
        loop.call_soon_threadsafe(lambda: stop.done() or stop.set_result(None))

    loop.run_in_executor(None, watch_stdin)

    async with serve(
        echo,
        args.host,
        args.port,
        max_size=args.max_size,
        compression=None if args.no_compression else "deflate",
        process_request=process_request,
        ping_interval=None,
        ssl=ssl_context,
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        scheme = "wss" if ssl_context else "ws"
        print(f"listening on {scheme}://{args.host}:{port}", flush=True)
        await stop
    # Don't wait for the stdin reader thread.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    asyncio.run(main())
