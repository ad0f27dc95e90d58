"""The threaded server: one handler thread per connection, one I/O thread per server."""

from __future__ import annotations

import functools
import os
import socket
import ssl as ssl_module
import stat
import threading
import time
from typing import Any, Callable, Iterable, List, Optional, Set, Union

import wscore
from wscore import ConnectionClosed, RequestReceived, State

from .._common import (
    NOT_WEBSOCKET,
    logger,
    normalize_answer,
    split_options,
    wants_path,
)
from .connection import Connection, Data
from .ioloop import EVENT_READ, IOLoop

__all__ = ["serve", "Server", "ServerConnection", "broadcast"]

_STACK_SIZE = 256 * 1024
_stack_lock = threading.Lock()
_IDLE_TIMEOUT = 30.0  # an idle worker thread waits this long for a connection, then exits
_MAX_IDLE = 256  # idle worker threads kept at most


class _Worker:
    """An idle worker thread's mailbox: ``wake`` is released once ``sock`` is set."""

    __slots__ = ("wake", "sock")

    def __init__(self) -> None:
        self.wake = threading.Lock()
        self.wake.acquire()
        self.sock: Optional[socket.socket] = None


def _start_thread(target: Callable[[], Any], name: str) -> threading.Thread:
    """Start a daemon thread with a small stack (only touched pages cost memory)."""
    with _stack_lock:
        old = threading.stack_size(_STACK_SIZE)
        try:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
        finally:
            threading.stack_size(old)
    return thread


class ServerConnection(Connection):
    """A connection accepted by a :class:`Server`; the handler receives it."""

    __slots__ = ("server",)

    def __init__(self, server: Server, sock: socket.socket, core: wscore.ServerConnection):
        super().__init__(sock, core, server._loop, server._topts)
        self.server = server

    def _on_closed(self) -> None:
        self.server._forget(self)


class _Refuser:
    """Answers 503 to a connection beyond ``max_connections``, inside the I/O thread."""

    def __init__(
        self,
        server: Server,
        sock: socket.socket,
        why: str = "server at capacity: max_connections reached",
    ) -> None:
        self._server = server
        self._why = why
        self._core = wscore.ServerConnection(server._config)
        self._done = False
        sock.setblocking(False)
        self._tls = server._ssl is not None
        if server._ssl is not None:  # the 503 must go out inside TLS
            sock = server._ssl.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        self.sock = sock
        server._loop.watch(self, EVENT_READ)  # type: ignore[arg-type]
        deadline = self._core.next_deadline() or time.monotonic() + 10
        server._loop.schedule(self, deadline)  # type: ignore[arg-type]

    def on_ready(self, mask: int) -> None:
        if self._tls:
            try:
                self.sock.do_handshake()  # type: ignore[attr-defined]
            except (ssl_module.SSLWantReadError, ssl_module.SSLWantWriteError):
                return
            except OSError:
                self._finish()
                return
            self._tls = False
        try:
            data = self.sock.recv(8192)
        except (BlockingIOError, ssl_module.SSLWantReadError):
            return
        except OSError:
            data = b""
        self._core.receive_data(data)
        for event in self._core.events():
            if isinstance(event, RequestReceived):
                self._core.respond(503, self._why + "\n")
        if self._core.state is State.CLOSED:
            self._finish()

    def on_timer(self) -> None:
        self._finish()

    def _timers_done(self) -> bool:
        return self._done

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        try:
            data = self._core.data_to_send()
            if data:
                self.sock.send(data)
        except OSError:
            pass
        self._server._loop.watch(self, 0)  # type: ignore[arg-type]
        try:
            self.sock.close()
        except OSError:  # pragma: no cover
            pass


class Server:
    """A WebSocket server running ``handler(connection)`` in a thread per connection.

    It listens from construction on; use it as a context manager, call
    :meth:`serve_forever` to block, and :meth:`shutdown` to stop.
    """

    def __init__(
        self,
        handler: Callable[..., Any],
        host: Optional[str] = "localhost",
        port: int = 8765,
        *,
        ssl: Optional[ssl_module.SSLContext] = None,
        process_request: Optional[Callable[[Connection, wscore.Request], Any]] = None,
        max_connections: Optional[int] = None,
        unix_path: Optional[str] = None,
        sock: Optional[socket.socket] = None,
        backlog: int = 1024,
        **options: Any,
    ) -> None:
        self._config, self._topts = split_options(options)
        self._handler = handler
        self._pass_path = wants_path(handler)
        self._ssl = ssl
        self._process_request = process_request
        self._max_connections = max_connections
        self._lock = threading.Lock()
        self._connections: Set[ServerConnection] = set()
        self._threads: Set[threading.Thread] = set()  # every worker thread alive
        self._idle: List[_Worker] = []  # workers waiting for a connection (LIFO)
        self._active = 0  # connections being served (handshake included)
        self._stopped = threading.Event()
        self._closing = False
        self.sockets: List[socket.socket] = []
        self._unix_path: Optional[str] = None  # a socket file this server made and removes
        if sock is not None:
            self.sockets.append(sock)
        elif unix_path is not None:
            _remove_stale_socket(unix_path)
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(unix_path)
            listener.listen(backlog)
            self.sockets.append(listener)
            self._unix_path = unix_path
        else:
            self.sockets.extend(_listen(host, port, backlog))
        self._loop = IOLoop("wscore-server-io")
        for listener in self.sockets:
            listener.setblocking(False)
            self._loop.add_acceptor(listener, functools.partial(self._accept, listener))

    # -- public -----------------------------------------------------------------

    @property
    def port(self) -> Optional[int]:
        """The TCP port the server listens on (useful with ``port=0``); None on a unix socket."""
        for listener in self.sockets:
            if listener.family in (socket.AF_INET, socket.AF_INET6):
                return int(listener.getsockname()[1])
        return None

    @property
    def connections(self) -> Set[ServerConnection]:
        """The open connections (a copy)."""
        with self._lock:
            return set(self._connections)

    def serve_forever(self) -> None:
        """Block until :meth:`shutdown` is called (Ctrl-C shuts down gracefully)."""
        try:
            while not self._stopped.wait(0.5):
                pass
        except KeyboardInterrupt:
            self.shutdown()

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop accepting, close every connection with 1001, wait for the handlers.

        Handlers get up to ``timeout`` seconds to finish; connections still open
        after that are dropped.
        """
        with self._lock:
            if self._closing:
                already = True
            else:
                already = False
                self._closing = True
            idle, self._idle = self._idle, []
        for worker in idle:  # sock None: exit
            worker.wake.release()
        if already:
            self._stopped.wait(timeout)
            return
        for listener in self.sockets:
            self._loop.remove_acceptor(listener)
            try:
                listener.close()
            except OSError:  # pragma: no cover
                pass
        if self._unix_path is not None:
            _remove_stale_socket(self._unix_path)
        deadline = time.monotonic() + timeout
        for conn in self.connections:
            conn.start_close(1001, "server shutting down")
        with self._lock:
            # A handler may call shutdown() itself: it cannot wait for its own thread.
            threads = [t for t in self._threads if t is not threading.current_thread()]
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        for conn in self.connections:  # e.g. the caller's own, when a handler calls this
            conn._closed_event.wait(max(0.0, deadline - time.monotonic()))
            conn.abort()
        self._loop.stop()
        self._stopped.set()

    close = shutdown

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    # -- internals ----------------------------------------------------------------

    def _accept(self, listener: socket.socket) -> None:
        for _ in range(64):
            try:
                sock, _addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            worker = None
            with self._lock:
                if self._closing:
                    sock.close()
                    continue
                full = self._max_connections is not None and self._active >= self._max_connections
                if not full:
                    self._active += 1
                    if self._idle:
                        worker = self._idle.pop()
            if full:
                _Refuser(self, sock)
            elif worker is not None:  # no thread start-up on the I/O thread's path
                worker.sock = sock
                worker.wake.release()
            else:
                try:
                    thread = _start_thread(functools.partial(self._work, sock), "wscore-conn")
                except RuntimeError as exc:  # the system refused a thread (limits, memory)
                    with self._lock:
                        self._active -= 1
                    logger.warning("cannot start a thread for a new connection: %s", exc)
                    _Refuser(self, sock, "server at capacity: cannot start a thread")
                    continue
                with self._lock:
                    self._threads.add(thread)

    def _forget(self, conn: ServerConnection) -> None:
        with self._lock:
            self._connections.discard(conn)

    def _work(self, sock: Optional[socket.socket]) -> None:
        """A worker thread: serve connections, waiting idle between them.

        Threads are reused (a handler's thread-local data outlives its connection);
        at most ``_MAX_IDLE`` wait, each for ``_IDLE_TIMEOUT`` seconds at most.
        """
        worker: Optional[_Worker] = None
        try:
            while sock is not None:
                try:
                    self._serve(sock)
                except Exception:  # pragma: no cover - a bug in this module
                    logger.exception("error while serving a connection")
                with self._lock:
                    self._active -= 1
                    if self._closing or len(self._idle) >= _MAX_IDLE:
                        return
                    if worker is None:
                        worker = _Worker()
                    self._idle.append(worker)
                sock = self._next_socket(worker)
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _next_socket(self, worker: _Worker) -> Optional[socket.socket]:
        """Wait in the idle pool for a connection; None to exit."""
        if not worker.wake.acquire(timeout=_IDLE_TIMEOUT):
            with self._lock:
                if worker in self._idle:  # nobody took it: leave the pool
                    self._idle.remove(worker)
                    return None
            worker.wake.acquire()  # taken meanwhile: its socket is on the way
        sock, worker.sock = worker.sock, None
        return sock

    def _serve(self, sock: socket.socket) -> None:
        config = self._config
        deadline = None if config.open_timeout is None else time.monotonic() + config.open_timeout
        if self._ssl is not None:
            try:
                sock.settimeout(config.open_timeout)
                sock = self._ssl.wrap_socket(sock, server_side=True)
            except (OSError, ValueError) as exc:
                logger.debug("TLS handshake failed: %s", exc)
                sock.close()
                return
        core = wscore.ServerConnection(config)
        conn = ServerConnection(self, sock, core)
        try:
            if not self._handshake(conn, deadline):
                return
        except OSError as exc:
            logger.debug("opening handshake failed: %s", exc)
            conn._finish_handshake_write()
            return
        with self._lock:
            self._connections.add(conn)
            closing = self._closing
        conn._start_io()
        if closing:
            conn.close(1001, "server shutting down")
            return
        try:
            if self._pass_path:
                self._handler(conn, conn.path)
            else:
                self._handler(conn)
        except ConnectionClosed as exc:
            logger.debug("handler ended: %s", exc)
            conn.close(1000)
        except Exception:
            logger.exception("connection handler failed")
            conn.close(1011, "internal error")
        else:
            conn.close(1000)

    def _handshake(self, conn: ServerConnection, deadline: Optional[float]) -> bool:
        """Read the request and answer it; True if the connection is now OPEN."""
        core = conn._core
        assert isinstance(core, wscore.ServerConnection)
        for event in conn._handshake_io(deadline):
            if isinstance(event, RequestReceived):
                request = event.request
                answer = None
                if self._process_request is not None:
                    try:
                        answer = self._process_request(conn, request)
                    except Exception:
                        logger.exception("process_request failed")
                        answer = (500, "internal server error\n")
                if answer is not None:
                    core.respond(*normalize_answer(answer))
                elif not request.is_websocket:
                    core.respond(*NOT_WEBSOCKET)
                else:
                    core.accept()
            break  # RequestReceived or Closed: either way the head is done
        if core.state is State.OPEN:
            data = core.data_to_send()
            if data:
                conn._send_all(
                    data, None if deadline is None else max(deadline, time.monotonic() + 0.5)
                )
            return True
        conn._finish_handshake_write()
        return False


def _remove_stale_socket(path: str) -> None:
    """Remove a unix socket file left at ``path`` (as asyncio does); leave other files."""
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.remove(path)
    except OSError:
        pass


def _listen(host: Optional[str], port: int, backlog: int) -> List[socket.socket]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: List[socket.socket] = []
    seen = set()
    for family, kind, proto, _, address in infos:
        if (family, address) in seen:
            continue
        seen.add((family, address))
        if sockets and port == 0:
            address = (address[0], sockets[0].getsockname()[1], *address[2:])
        listener = socket.socket(family, kind, proto)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            listener.bind(address)
            listener.listen(backlog)
        except OSError:
            listener.close()
            if not sockets and (family, address) == (infos[-1][0], infos[-1][4]):
                raise
            continue
        sockets.append(listener)
    if not sockets:  # pragma: no cover
        raise OSError(f"could not listen on {host}:{port}")
    return sockets


def serve(
    handler: Callable[..., Any],
    host: Optional[str] = "localhost",
    port: int = 8765,
    **options: Any,
) -> Server:
    """Start a threaded WebSocket server; ``handler(connection)`` runs per connection.

    ``handler(connection, path)`` works too. Returns the listening :class:`Server`.
    Options: ``max_size``, ``max_queue``, ``write_limit``, ``compression``,
    ``ping_interval``, ``ping_timeout``, ``open_timeout``, ``close_timeout``,
    ``subprotocols``, ``origins``, ``extra_headers``, ``process_request``,
    ``max_connections``, ``ssl``, ``unix_path``, ``sock``.
    """
    return Server(handler, host, port, **options)


def broadcast(
    connections: Iterable[Connection], message: Union[Data, bytearray, memoryview]
) -> List[Connection]:
    """Send ``message`` to every open connection without ever blocking.

    A connection that is closed, busy sending, or already holding more than
    ``write_limit`` unsent bytes is skipped. Returns the skipped connections.
    """
    skipped: List[Connection] = []
    for conn in connections:
        if not conn._send_lock.acquire(blocking=False):
            skipped.append(conn)
            continue
        try:
            with conn._lock:
                if conn._core.state is not State.OPEN or len(conn._pending) > conn._write_limit:
                    skipped.append(conn)
                    continue
                conn._core.send(message)
                conn._flush()
                if conn._pending:
                    conn._adopt()
        finally:
            conn._send_lock.release()
    if skipped:
        logger.debug("broadcast skipped %d slow or closed connections", len(skipped))
    return skipped
