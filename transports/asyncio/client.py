"""The asyncio client: ``connect()`` (awaitable, async context manager, reconnecting iterator)."""

from __future__ import annotations

import asyncio
import random
import socket
import ssl as ssl_module
from typing import Any, AsyncIterator, Generator, Optional

from wscore import (
    ClientConnection as CoreClient,
)
from wscore import (
    InvalidHandshake,
    InvalidHeader,
    InvalidStatus,
    Opened,
    OpenTimeout,
    parse_uri,
)

from .._common import logger, split_options
from .connection import CLOCK, Connection

__all__ = ["connect", "ClientConnection"]


class ClientConnection(Connection):
    """The client side of a connection."""

    __slots__ = ("_opened",)

    _is_client = True

    def __init__(self, core: CoreClient, options: Any, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(core, options, loop)
        self._opened: asyncio.Future[None] = loop.create_future()

    def _on_event(self, event: Any) -> None:
        if type(event) is Opened and not self._opened.done():
            self._opened.set_result(None)

    def _on_closed(self, event: Any) -> None:
        super()._on_closed(event)
        if not self._opened.done():
            error = event.error
            if error is None:
                error = InvalidHandshake("connection closed during the opening handshake")
            self._opened.set_exception(error)

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        super().connection_lost(exc)
        if not self._opened.done():  # pragma: no cover - the core reports Closed first
            self._opened.set_exception(InvalidHandshake("connection lost during the handshake"))


def _retryable(exc: BaseException) -> bool:
    """Whether reconnecting may help: network errors, timeouts, 5xx; not 4xx or bad URIs."""
    if isinstance(exc, InvalidStatus):
        return exc.status >= 500
    if isinstance(exc, (InvalidHeader, ssl_module.SSLCertVerificationError)):
        return False
    return isinstance(exc, (OSError, asyncio.TimeoutError, TimeoutError, InvalidHandshake))


class connect:
    """Open a client connection: ``async with connect(uri) as ws:`` or ``await connect(uri)``.

    ``async for ws in connect(uri):`` yields a new connection each time the body
    moves on, retrying with exponential backoff and jitter (``backoff_initial``,
    ``backoff_factor``, ``backoff_max``) while connecting fails (refused, timeouts,
    5xx); it stops on errors that retrying cannot fix (4xx answers, invalid URIs,
    headers or certificates)::

        async for ws in connect(uri):
            try:
                async for message in ws:
                    ...
            except ConnectionClosed:
                continue  # lost: connect again

    A non-101 answer raises
    :class:`wscore.InvalidStatus`. ``ssl`` is an ``ssl.SSLContext`` (the default
    for ``wss://`` checks certificates); ``unix_path`` connects to a unix socket,
    ``sock`` uses an already connected socket (the URI still gives the path and Host;
    not for the reconnecting form).
    """

    def __init__(
        self,
        uri: str,
        *,
        ssl: Optional[ssl_module.SSLContext] = None,
        unix_path: Optional[str] = None,
        sock: Optional[socket.socket] = None,
        origin: Optional[str] = None,
        server_hostname: Optional[str] = None,
        backoff_initial: float = 1.0,
        backoff_factor: float = 1.618,
        backoff_max: float = 60.0,
        **options: Any,
    ) -> None:
        self.uri = uri
        self._wsuri = parse_uri(uri)
        if ssl is not None and not self._wsuri.secure:
            raise ValueError("connect() got an ssl context for a ws:// URI: use wss://")
        self._ssl = ssl
        self._unix_path = unix_path
        self._sock = sock
        self._origin = origin
        self._server_hostname = server_hostname
        self._config, self._options = split_options(options)
        self._backoff = (backoff_initial, backoff_factor, backoff_max)
        self.connection: Optional[ClientConnection] = None

    async def _create(self) -> ClientConnection:
        loop = asyncio.get_running_loop()
        core = CoreClient(self._wsuri, self._config, origin=self._origin, clock=CLOCK)
        connection = ClientConnection(core, self._options, loop)
        timeout = self._config.open_timeout
        try:
            await asyncio.wait_for(self._open(loop, connection), timeout)
        except asyncio.TimeoutError:
            connection.abort()
            raise OpenTimeout(f"opening handshake not done within {timeout}s") from None
        except BaseException:
            connection.abort()
            raise
        self.connection = connection
        return connection

    async def _open(self, loop: asyncio.AbstractEventLoop, connection: ClientConnection) -> None:
        wsuri = self._wsuri
        ssl: Any = self._ssl
        if wsuri.secure and ssl is None:
            ssl = ssl_module.create_default_context()
        hostname = self._server_hostname or (wsuri.host if ssl else None)
        if self._sock is not None:
            await loop.create_connection(
                lambda: connection, sock=self._sock, ssl=ssl, server_hostname=hostname
            )
        elif self._unix_path is not None:
            await loop.create_unix_connection(
                lambda: connection, self._unix_path, ssl=ssl, server_hostname=hostname
            )
        else:
            await loop.create_connection(
                lambda: connection, wsuri.host, wsuri.port, ssl=ssl, server_hostname=hostname
            )
        await connection._opened

    def __await__(self) -> Generator[Any, None, ClientConnection]:
        return self._create().__await__()

    async def __aenter__(self) -> ClientConnection:
        return await self._create()

    async def __aexit__(self, *exc_info: Any) -> None:
        if self.connection is not None:
            await self.connection.close()

    async def __aiter__(self) -> AsyncIterator[ClientConnection]:
        initial, factor, maximum = self._backoff
        delay = initial
        while True:
            try:
                connection = await self._create()
            except Exception as exc:
                if not _retryable(exc):
                    raise
                wait = delay * random.uniform(0.5, 1.0)  # jitter
                logger.info("connect to %s failed (%s); retrying in %.1fs", self.uri, exc, wait)
                await asyncio.sleep(wait)
                delay = min(delay * factor, maximum)
                continue
            delay = initial
            try:
                yield connection
            finally:
                await connection.close()
            # The connection was lost or the body moved on: wait a little, then reconnect.
            await asyncio.sleep(initial * random.uniform(0.0, 0.5))
