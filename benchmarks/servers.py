"""Echo servers, one per library; each runs in its own process.

    python -m benchmarks.servers NAME [--cpu 0]

Listens on 127.0.0.1, an OS-chosen port, and prints ``PORT <n>`` on stdout once it
accepts connections. Every server echoes each message (binary as binary, text as
text) with compression off, keepalive pings off and a 1 GiB message-size limit.
The parent process stops it with SIGKILL (by PID).
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import socket
import sys
import threading

from .common import HOST, MAX_SIZE, pin, raise_nofile


def announce(port: int) -> None:
    sys.stdout.write(f"PORT {port}\n")
    sys.stdout.flush()


def use_uvloop() -> None:
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def kwargs_for(func, **kwargs):
    """Keep only the keyword arguments that ``func`` accepts."""
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return kwargs
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return kwargs
    return {k: v for k, v in kwargs.items() if k in params}


# --------------------------------------------------------------------------- websockets


async def _websockets_asyncio() -> None:
    from websockets.asyncio.server import serve

    async def handler(ws):
        try:
            async for msg in ws:
                await ws.send(msg)
        except Exception:
            pass

    async with serve(
        handler,
        HOST,
        0,
        compression=None,
        ping_interval=None,
        max_size=MAX_SIZE,
        backlog=4096,
    ) as server:
        announce(server.sockets[0].getsockname()[1])
        await server.serve_forever()


def websockets_asyncio() -> None:
    asyncio.run(_websockets_asyncio())


def websockets_asyncio_uvloop() -> None:
    use_uvloop()
    asyncio.run(_websockets_asyncio())


def websockets_sync() -> None:
    from websockets.sync.server import serve

    def handler(ws):
        try:
            for msg in ws:
                ws.send(msg)
        except Exception:
            pass

    with serve(
        handler,
        HOST,
        0,
        compression=None,
        max_size=MAX_SIZE,
        **kwargs_for(serve, ping_interval=None),
    ) as server:
        server.socket.listen(4096)
        announce(server.socket.getsockname()[1])
        server.serve_forever()


# --------------------------------------------------------------------------- aiohttp


async def _aiohttp() -> None:
    from aiohttp import WSMsgType, web

    async def handler(request):
        ws = web.WebSocketResponse(
            compress=False, max_msg_size=MAX_SIZE, autoping=True, heartbeat=None
        )
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
            elif msg.type == WSMsgType.TEXT:
                await ws.send_str(msg.data)
        return ws

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0, backlog=4096)
    await site.start()
    announce(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
    await asyncio.Event().wait()


def aiohttp_server() -> None:
    asyncio.run(_aiohttp())


def aiohttp_uvloop() -> None:
    use_uvloop()
    asyncio.run(_aiohttp())


# --------------------------------------------------------------------------- picows


async def _picows() -> None:
    from picows import WSListener, WSMsgType, ws_create_server

    BIN, TEXT, CONT = WSMsgType.BINARY, WSMsgType.TEXT, WSMsgType.CONTINUATION
    CLOSE, PING = WSMsgType.CLOSE, WSMsgType.PING

    class Echo(WSListener):
        def on_ws_frame(self, transport, frame):
            t = frame.msg_type
            if t is BIN or t is TEXT or t is CONT:
                transport.send(t, frame.get_payload_as_memoryview(), frame.fin)
            elif t is PING:
                transport.send_pong(frame.get_payload_as_bytes())
            elif t is CLOSE:
                transport.send_close(frame.get_close_code(), frame.get_close_message())
                transport.disconnect()

    server = await ws_create_server(
        lambda request: Echo(),
        HOST,
        0,
        max_frame_size=MAX_SIZE,
        backlog=4096,
        enable_auto_ping=False,
    )
    announce(server.sockets[0].getsockname()[1])
    await server.serve_forever()


def picows_server() -> None:
    asyncio.run(_picows())


def picows_uvloop() -> None:
    use_uvloop()
    asyncio.run(_picows())


# --------------------------------------------------------------------------- simple-websocket


def simple_websocket_server() -> None:
    """simple-websocket has no listener of its own: it takes a WSGI environ holding the
    socket. This is the smallest faithful host: a blocking accept loop and one thread
    per connection that reads the HTTP request head and hands a Werkzeug-style environ
    (``werkzeug.socket``) to ``simple_websocket.Server.accept``."""
    import simple_websocket

    def conn_thread(sock: socket.socket) -> None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(4096)
                if not chunk:
                    sock.close()
                    return
                head += chunk
            lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
            environ = {"werkzeug.socket": sock, "REQUEST_METHOD": "GET"}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                environ["HTTP_" + name.strip().upper().replace("-", "_")] = value.strip()
            ws = simple_websocket.Server.accept(environ, max_message_size=None, receive_bytes=65536)
            while True:
                msg = ws.receive()
                if msg is None:
                    break
                ws.send(msg)
        except Exception:
            pass
        finally:
            try:
                sock.close()
            except OSError:
                pass

    lsock = socket.create_server((HOST, 0), backlog=4096)
    announce(lsock.getsockname()[1])
    while True:
        sock, _ = lsock.accept()
        threading.Thread(target=conn_thread, args=(sock,), daemon=True).start()


# --------------------------------------------------------------------------- raw TCP ceilings


async def _raw_asyncio() -> None:
    class Echo(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def data_received(self, data):
            self.transport.write(data)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(Echo, HOST, 0, backlog=4096)
    announce(server.sockets[0].getsockname()[1])
    await server.serve_forever()


def raw_asyncio() -> None:
    asyncio.run(_raw_asyncio())


def raw_asyncio_uvloop() -> None:
    use_uvloop()
    asyncio.run(_raw_asyncio())


def raw_threaded() -> None:
    def conn_thread(sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # 64 KiB reads, as websockets' threading server does: recv(262144) is above
        # glibc's first mmap threshold, so in a fresh process every read mapped and
        # unmapped its buffer (fresh-process many-100: 33.9k vs 72.5k msgs/s); and a
        # per-thread buffer would count 256 KiB per idle connection.
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                sock.sendall(data)
        except OSError:
            pass
        finally:
            sock.close()

    lsock = socket.create_server((HOST, 0), backlog=4096)
    announce(lsock.getsockname()[1])
    while True:
        sock, _ = lsock.accept()
        threading.Thread(target=conn_thread, args=(sock,), daemon=True).start()


# --------------------------------------------------------------------------- ours


#: ``--tls CERT,KEY``: a server context for the servers that take one (ours-threaded).
TLS = None


def ours_threaded() -> None:
    from transports.threaded import serve

    def handler(ws):
        try:
            for msg in ws:
                ws.send(msg)
        except Exception:
            pass

    server = serve(
        handler,
        HOST,
        0,
        compression=None,
        ping_interval=None,
        max_size=MAX_SIZE,
        ssl=TLS,
        **kwargs_for(serve, max_connections=None),
    )
    with server:
        announce(server.port)
        server.serve_forever()


async def _ours_asyncio() -> None:
    from transports.asyncio import serve

    async def handler(ws):
        try:
            if hasattr(ws, "__aiter__"):
                async for msg in ws:
                    await ws.send(msg)
            else:  # pragma: no cover - fallback if iteration is not there yet
                while True:
                    await ws.send(await ws.recv())
        except Exception:
            pass

    async with serve(
        handler,
        HOST,
        0,
        compression=None,
        ping_interval=None,
        max_size=MAX_SIZE,
        **kwargs_for(serve, max_connections=None),
    ) as server:
        announce(server.port)
        await server.serve_forever()


def ours_asyncio() -> None:
    asyncio.run(_ours_asyncio())


def ours_asyncio_uvloop() -> None:
    use_uvloop()
    asyncio.run(_ours_asyncio())


SERVERS = {
    "websockets": websockets_asyncio,
    "websockets-uvloop": websockets_asyncio_uvloop,
    "websockets-sync": websockets_sync,
    "aiohttp": aiohttp_server,
    "aiohttp-uvloop": aiohttp_uvloop,
    "picows": picows_server,
    "picows-uvloop": picows_uvloop,
    "simple-websocket": simple_websocket_server,
    "ours-threaded": ours_threaded,
    "ours-asyncio": ours_asyncio,
    "ours-asyncio-uvloop": ours_asyncio_uvloop,
    "raw-asyncio": raw_asyncio,
    "raw-asyncio-uvloop": raw_asyncio_uvloop,
    "raw-threaded": raw_threaded,
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("name", choices=sorted(SERVERS))
    ap.add_argument("--cpu", default=None)
    ap.add_argument("--tls", default=None, help="CERT,KEY: serve TLS (ours-threaded only)")
    args = ap.parse_args()
    if args.tls:
        global TLS
        if args.name != "ours-threaded":
            ap.error("--tls: only ours-threaded takes it")
        import ssl

        cert, key = args.tls.split(",")
        TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        TLS.load_cert_chain(cert, key)
    pin(args.cpu)
    raise_nofile()
    threading.stack_size(512 * 1024)  # lets threaded servers hold 10k connections
    SERVERS[args.name]()


if __name__ == "__main__":
    main()
