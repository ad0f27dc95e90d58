"""The command line: ``python -m transports serve|connect``.

``serve`` runs the demo server: every WebSocket message is echoed to its sender
(text as text, binary as binary) on any path; ``GET /`` serves a browser console
and ``GET /healthz`` answers 200. ``connect`` is an interactive client.
"""

from __future__ import annotations

import argparse
import logging
import signal
import ssl
import sys
import threading
from typing import Any, List, Optional

from ._common import demo_http


def _ssl_context(args: argparse.Namespace) -> Optional[ssl.SSLContext]:
    if not args.certfile:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.certfile, args.keyfile)
    return context


def _options(args: argparse.Namespace) -> dict:  # type: ignore[type-arg]
    options: dict = {"max_size": args.max_size}  # type: ignore[type-arg]
    if args.no_compression:
        options["compression"] = None
    return options


def serve_threaded(host: str, port: int, *, ssl: Any = None, **options: Any) -> None:
    """Run the echo demo on the threaded transport until Ctrl-C or SIGTERM."""
    from .threaded import serve

    def echo(connection: Any) -> None:
        for message in connection:
            connection.send(message)

    def process_request(connection: Any, request: Any) -> Any:
        return demo_http(request)

    server = serve(echo, host, port, ssl=ssl, process_request=process_request, **options)
    scheme = "wss" if ssl else "ws"
    print(f"listening on {scheme}://{host}:{server.port}", flush=True)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever()
    print("server stopped", flush=True)


def _serve(args: argparse.Namespace) -> int:
    options = _options(args)
    context = _ssl_context(args)
    if args.transport == "asyncio":
        from .asyncio import serve_demo

        serve_demo(args.host, args.port, ssl=context, **options)
    else:
        serve_threaded(args.host, args.port, ssl=context, **options)
    return 0


def _connect(args: argparse.Namespace) -> int:
    from wscore import ConnectionClosed

    from .threaded import connect

    ws = connect(args.uri, max_size=args.max_size)
    print(f"connected to {args.uri}; type lines to send them, Ctrl-D to close", flush=True)

    def printer() -> None:
        try:
            for message in ws:
                shown = message if isinstance(message, str) else f"<binary, {len(message)} bytes>"
                print(f"< {shown}", flush=True)
        except ConnectionClosed as exc:
            print(f"connection closed: {exc}", flush=True)

    thread = threading.Thread(target=printer, daemon=True)
    thread.start()
    try:
        for line in sys.stdin:
            ws.send(line.rstrip("\n"))
    except (KeyboardInterrupt, ConnectionClosed):
        pass
    ws.close()
    thread.join(2)
    print(f"closed with code {ws.close_code}", flush=True)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``python -m transports`` and the ``wscore`` script."""
    parser = argparse.ArgumentParser(
        prog="python -m transports", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the demo echo server")
    serve.add_argument("--transport", choices=["threaded", "asyncio"], default="threaded")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765)
    serve.add_argument("--max-size", type=int, default=2**20, help="largest message in bytes")
    serve.add_argument("--no-compression", action="store_true", help="disable permessage-deflate")
    serve.add_argument("--certfile", help="TLS certificate (PEM); serves wss://")
    serve.add_argument("--keyfile", help="TLS private key (PEM)")
    serve.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    connect = sub.add_parser("connect", help="interactive client")
    connect.add_argument("uri")
    connect.add_argument("--max-size", type=int, default=2**20)
    connect.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "serve":
        return _serve(args)
    return _connect(args)
