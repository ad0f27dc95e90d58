"""The asyncio server: ``serve()``, the ``Server`` it returns, and the demo server."""

from __future__ import annotations

import asyncio
import inspect
import signal
import socket
import ssl as ssl_module
from typing import Any, Awaitable, Callable, Generator, List, Optional, Set, cast

from wscore import ConnectionClosed, RequestReceived, State
from wscore import ServerConnection as CoreServer

from .._common import (
    NOT_WEBSOCKET,
    defer_accept,
    demo_http,
    logger,
    normalize_answer,
    split_options,
    wants_path,
)
from .connection import CLOCK, Connection

__all__ = ["serve", "Server", "ServerConnection", "serve_demo"]

Handler = Callable[..., Awaitable[Any]]


class ServerConnection(Connection):
    """The server side of a connection, handed to the handler."""

    __slots__ = ("server",)

    def __init__(self, server: Server, loop: asyncio.AbstractEventLoop) -> None:
        core = CoreServer(server._config, clock=CLOCK)
        super().__init__(core, server._options, loop)
        self.server = server

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.server._connections.add(self)
        super().connection_made(transport)

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        super().connection_lost(exc)
        self.server._connections.discard(self)

    def _on_event(self, event: Any) -> None:
        if type(event) is RequestReceived:
            self.server._start_handler(self, event.request)


class Server:
    """A listening WebSocket server: ``close()`` then ``await wait_closed()``."""

    def __init__(
        self,
        handler: Handler,
        *,
        process_request: Optional[Callable[..., Any]] = None,
        max_connections: Optional[int] = None,
        **options: Any,
    ) -> None:
        self._config, self._options = split_options(options)
        self._handler = handler
        self._with_path = wants_path(handler)
        self._process_request = process_request
        if max_connections is not None and (
            not isinstance(max_connections, int) or max_connections < 1
        ):
            raise ValueError(f"max_connections must be None or an int >= 1: {max_connections!r}")
        self._max_connections = max_connections
        self._connections: Set[ServerConnection] = set()
        self._tasks: Set[asyncio.Task[None]] = set()
        self._active = 0  # WebSocket connections from their request to their handler's end
        self._server: Optional[Any] = None  # asyncio.Server, or uvloop's
        self._port: Optional[int] = None
        self._closing = False
        self._close_requested: Optional[asyncio.Event] = None
        self._shutdown: Optional[asyncio.Task[None]] = None
        timeout = self._config.close_timeout
        self.shutdown_timeout = timeout if timeout is not None else 10.0

    # -- lifecycle --------------------------------------------------------------

    async def _start(
        self, host: Optional[str], port: Optional[int], ssl: Any, unix_path: Any, sock: Any
    ) -> None:
        loop = asyncio.get_running_loop()
        self._close_requested = asyncio.Event()

        def factory() -> ServerConnection:
            return ServerConnection(self, loop)

        if sock is not None and sock.family == socket.AF_UNIX:
            self._server = await loop.create_unix_server(factory, sock=sock, ssl=ssl)
        elif sock is not None:
            self._server = await loop.create_server(factory, sock=sock, ssl=ssl)
        elif unix_path is not None:
            self._server = await loop.create_unix_server(factory, unix_path, ssl=ssl)
        else:
            self._server = await loop.create_server(
                factory, host, port, ssl=ssl  # type: ignore[arg-type]
            )
        for listener in self._server.sockets:
            if listener.family in (socket.AF_INET, socket.AF_INET6):
                if self._port is None:
                    self._port = int(listener.getsockname()[1])
                if sock is None:  # a listener we made (not the caller's)
                    defer_accept(listener)

    @property
    def sockets(self) -> List[socket.socket]:
        """The listening sockets."""
        return [] if self._server is None else list(self._server.sockets)

    @property
    def port(self) -> Optional[int]:
        """The TCP port the server listens (or listened) on; ``None`` for a unix socket."""
        return self._port

    @property
    def connections(self) -> Set[ServerConnection]:
        """The connections being served (a copy)."""
        return set(self._connections)

    def is_serving(self) -> bool:
        """True while the server accepts connections."""
        return self._server is not None and self._server.is_serving() and not self._closing

    def close(self) -> None:
        """Stop accepting, send 1001 to every client; ``wait_closed()`` to finish."""
        if self._closing:
            return
        self._closing = True
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            connection._start_close(1001, "server shutting down")
        self._shutdown = asyncio.get_running_loop().create_task(self._finish())
        if self._close_requested is not None:
            self._close_requested.set()

    async def _finish(self) -> None:
        """Wait for handlers up to ``shutdown_timeout``, then drop what is left."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self.shutdown_timeout)
        for task in list(self._tasks):
            task.cancel()
        for connection in list(self._connections):
            connection.abort()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=1.0)
        waiters = [c._lost_waiter for c in self._connections]
        if waiters:
            await asyncio.wait(waiters, timeout=1.0)

    async def wait_closed(self) -> None:
        """Wait until ``close()`` was called and the shutdown finished."""
        assert self._close_requested is not None, "the server was never started"
        await self._close_requested.wait()
        assert self._shutdown is not None
        await asyncio.shield(self._shutdown)

    async def serve_forever(self) -> None:
        """Serve until ``close()`` is called (cancelling this closes the server)."""
        try:
            await self.wait_closed()
        except asyncio.CancelledError:
            self.close()
            raise

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.close()
        await self.wait_closed()

    # -- one connection -----------------------------------------------------------

    def _start_handler(self, connection: ServerConnection, request: Any) -> None:
        task = asyncio.get_running_loop().create_task(self._handle(connection, request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, connection: ServerConnection, request: Any) -> Any:
        """What to answer instead of accepting, or None to accept."""
        if self._process_request is not None:
            answer = self._process_request(connection, request)
            if inspect.isawaitable(answer):
                answer = await answer
            if answer is not None:
                return answer
        if not request.is_websocket:
            return NOT_WEBSOCKET
        return None

    async def _handle(self, connection: ServerConnection, request: Any) -> None:
        """Answer the request, then run the handler if it was accepted."""
        core = cast(CoreServer, connection.core)
        limit = self._max_connections
        if self._closing:
            answer: Any = (503, "server shutting down\n", [("Retry-After", "1")])
        elif request.is_websocket and limit is not None and self._active >= limit:
            answer = (503, "too many connections: try again later\n", [("Retry-After", "1")])
        else:
            answer = None
        # A WebSocket request holds its slot from here, so that slow hooks cannot overbook.
        counted = request.is_websocket and answer is None
        if counted:
            self._active += 1
        try:
            if answer is None:
                try:
                    answer = await self._answer(connection, request)
                    if answer is not None:
                        answer = normalize_answer(answer)
                except Exception:
                    logger.error("process_request failed", exc_info=True)
                    answer = (500, "internal server error\n", [])
            if core.state is not State.CONNECTING:  # dropped or timed out meanwhile
                return
            if answer is not None:
                try:
                    core.respond(*answer)
                except Exception:  # e.g. a status outside 200-599
                    logger.error("process_request returned an unusable answer", exc_info=True)
                    core.respond(500, "internal server error\n")
                connection._process()
                return
            core.accept()
            connection._process()
            if not connection.open:
                return
            await self._run_handler(connection)
        finally:
            if counted:
                self._active -= 1

    async def _run_handler(self, connection: ServerConnection) -> None:
        try:
            if self._with_path:
                result = self._handler(connection, connection.path)
            else:
                result = self._handler(connection)
            if inspect.isawaitable(result):
                await result
        except ConnectionClosed as exc:  # the peer went away: not the handler's bug
            logger.debug("connection handler ended: %s", exc)
            await connection.close(1000)
        except Exception:
            logger.error("connection handler failed", exc_info=True)
            await connection.close(1011, "internal error")
        else:
            await connection.close(1000)


class serve:
    """Start a WebSocket server: ``async with serve(handler, host, port) as server:``.

    Also awaitable: ``server = await serve(...)``. ``handler(connection)`` or
    ``handler(connection, path)`` is a coroutine function run for each connection;
    when it returns the connection closes with 1000, when it raises, with 1011.
    Options: those of :func:`transports._common.split_options`, plus
    ``process_request``, ``max_connections``, ``ssl``, ``unix_path`` and ``sock``
    (an already listening socket).
    """

    def __init__(
        self,
        handler: Handler,
        host: Optional[str] = "localhost",
        port: Optional[int] = 8765,
        *,
        ssl: Optional[ssl_module.SSLContext] = None,
        unix_path: Optional[str] = None,
        sock: Optional[socket.socket] = None,
        **options: Any,
    ) -> None:
        self._server = Server(handler, **options)
        self._where = (host, port, ssl, unix_path, sock)

    async def _create(self) -> Server:
        await self._server._start(*self._where)
        return self._server

    def __await__(self) -> Generator[Any, None, Server]:
        return self._create().__await__()

    async def __aenter__(self) -> Server:
        return await self._create()

    async def __aexit__(self, *exc_info: Any) -> None:
        await self._server.__aexit__(*exc_info)


def serve_demo(
    host: str, port: int, *, ssl: Optional[ssl_module.SSLContext] = None, **options: Any
) -> None:
    """Run the echo demo server until SIGINT or SIGTERM (blocking).

    Echoes every message on any path; plain HTTP gets the demo page at ``/`` and
    200 at ``/healthz``. Prints ``listening on ws://HOST:PORT`` once accepting.
    """

    async def echo(connection: Connection) -> None:
        async for message in connection:
            await connection.send(message)

    async def main() -> None:
        async with serve(
            echo,
            host,
            port,
            ssl=ssl,
            process_request=lambda connection, request: demo_http(request),
            **options,
        ) as server:
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                try:
                    loop.add_signal_handler(signum, server.close)
                except (NotImplementedError, RuntimeError):  # pragma: no cover - Windows
                    pass
            scheme = "wss" if ssl is not None else "ws"
            shown = f"[{host}]" if ":" in host else host
            print(f"listening on {scheme}://{shown}:{server.port}", flush=True)
            await server.wait_closed()

    asyncio.run(main())
