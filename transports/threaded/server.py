"""The threaded server: one handler thread per connection, one I/O thread per server."""

from __future__ import annotations

import errno
import functools
import os
import re
import socket
import ssl as ssl_module
import stat
import threading
import time
from typing import Any, Callable, Iterable, List, Optional, Set, Tuple, Union

import wscore
from wscore import ConnectionClosed, RequestReceived, State

from .._common import (
    NOT_WEBSOCKET,
    defer_accept,
    logger,
    normalize_answer,
    split_options,
    wants_path,
)
from .connection import (
    _BLOCKING_READS,
    _DONTWAIT,
    _HANDSHAKE_READ_SIZE,
    _LINGER,
    _WOULD_BLOCK,
    Connection,
    Data,
)
from .ioloop import EVENT_READ, EVENT_WRITE, IOLoop

__all__ = ["serve", "Server", "ServerConnection", "broadcast"]

_STACK_SIZE = 256 * 1024
_stack_lock = threading.Lock()
_HEAD_END = re.compile(b"\n\r?\n")  # where h11 ends a request head
# accept() failing with these (out of file descriptors or memory) would fail again at
# once: the listener rests this long instead of spinning the I/O thread.
_ACCEPT_FULL = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
_ACCEPT_RETRY = 0.5
_IDLE_TIMEOUT = 30.0  # an idle worker thread waits this long for a connection, then exits
_MAX_IDLE = 256  # idle worker threads kept at most


class _Worker:
    """An idle worker thread's mailbox: ``wake`` is released once ``job`` is set."""

    __slots__ = ("wake", "job")

    def __init__(self) -> None:
        self.wake = threading.Lock()
        self.wake.acquire()
        self.job: Optional[_Opening] = None


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


class _Opening:
    """A new connection until its request head is in, watched by the I/O thread.

    No thread waits for a client that is slow to send its request, or never
    does: the I/O thread does the TLS handshake and collects the head's bytes,
    within ``open_timeout`` and ``max_request_size``, then hands them to a worker
    thread, which parses and answers them (see ``Server._start``). Only refusals
    are answered here: a head too large (431), no room (503).
    """

    __slots__ = ("_server", "sock", "head", "deadline", "_tls", "_plain", "_interest", "_done",
                 "_linger_until", "_core")

    def __init__(self, server: Server, sock: socket.socket) -> None:
        self._server = server
        self.head = bytearray()  # what the client sent so far: the head, maybe more
        timeout = server._config.open_timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self._interest = 0
        self._done = False
        self._linger_until: Optional[float] = None
        self._core: Optional[wscore.ServerConnection] = None  # only to answer a refusal
        self._tls = server._ssl is not None
        # A plain socket stays blocking for its worker: reads here pass MSG_DONTWAIT.
        self._plain = not self._tls and _BLOCKING_READS
        if not self._plain:
            sock.setblocking(False)
        if server._ssl is not None:
            sock = server._ssl.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        self.sock = sock

    def start(self) -> bool:
        """Take the request if it is there already, else wait for it in the loop.

        Returns whether it waits (True) or is done (handed over, or closed).
        """
        if self._plain:
            self.on_ready(EVENT_READ)
        else:
            self._want(EVENT_READ)
        if self._done:
            return False
        if self.deadline is not None:
            self._server._loop.schedule(self, self.deadline)  # type: ignore[arg-type]
        return True

    def on_ready(self, mask: int) -> None:
        if self._done:
            return
        sock = self.sock
        if self._linger_until is not None:  # answered: discard input until the peer's EOF
            self._drain()
            return
        if self._tls:
            try:
                sock.do_handshake()  # type: ignore[attr-defined]
            except ssl_module.SSLWantReadError:
                self._want(EVENT_READ)
                return
            except ssl_module.SSLWantWriteError:
                self._want(EVENT_WRITE)
                return
            except (OSError, ValueError) as exc:
                logger.debug("TLS handshake failed: %s", exc)
                self._close()
                return
            self._tls = False
        flags = _DONTWAIT if self._plain else 0
        head = self.head
        limit = self._server._config.max_request_size
        while True:
            try:  # at most one byte past the limit: what follows waits in the kernel
                data = sock.recv(min(_HANDSHAKE_READ_SIZE, limit + 1 - len(head)), flags)
            except _WOULD_BLOCK:
                self._want(EVENT_READ)
                return
            except OSError:
                data = b""
            if not data:  # the peer left before its request was complete
                self._close()
                return
            # The end of the head: h11's blank line, searched in what is new.
            start = max(0, len(head) - 2)
            head += data
            if _HEAD_END.search(head, start) is not None:
                self._server._start(self)
                return
            if len(head) > limit:
                self.refuse(431, "")  # the core says why
                return

    def on_timer(self) -> None:
        if self._done:
            return
        now = time.monotonic()
        if self._linger_until is not None:
            if now >= self._linger_until:
                self._close()
        elif self.deadline is not None and now >= self.deadline:
            self._close()  # open_timeout: no answer, as the core does

    def _timers_done(self) -> bool:
        return self._done

    def refuse(self, status: int, why: str) -> None:
        """Answer ``status`` with ``why`` as the body (after the core's own refusals), close."""
        self._core = core = wscore.ServerConnection(self._server._config)
        core.receive_data(bytes(self.head))
        if core.state is State.CONNECTING and core.request is not None:
            core.respond(status, why + "\n", [("Retry-After", "1")])
        self._finish()

    def hand_over(self) -> None:
        """Stop watching the socket: a worker thread takes the connection."""
        self._done = True
        self._want(0)

    def take_back(self) -> None:
        """Undo :meth:`hand_over` (no worker could take the connection)."""
        self._done = False

    def _want(self, events: int) -> None:
        if events != self._interest:
            self._interest = events
            self._server._loop.watch(self, events)  # type: ignore[arg-type]

    def _finish(self) -> None:
        """Write the refusal, then close once the peer has read it.

        Closing with unread input (the rest of an oversized head) would make the
        kernel reset the connection, which can destroy the answer before the peer
        reads it: so send FIN and discard input until EOF, ``_LINGER`` at most.
        """
        data = self._core.data_to_send() if self._core is not None else b""
        self.head = bytearray()
        if not data:
            self._close()
            return
        try:
            if self._plain:
                self.sock.send(data, _DONTWAIT)
            else:
                self.sock.send(data)
            self.sock.shutdown(socket.SHUT_WR)
        except (OSError, ValueError):
            self._close()
            return
        self._linger_until = time.monotonic() + _LINGER
        self._server._loop.schedule(self, self._linger_until)  # type: ignore[arg-type]
        self._drain()

    def _drain(self) -> None:
        flags = _DONTWAIT if self._plain else 0
        for _ in range(16):
            try:
                if not self.sock.recv(_HANDSHAKE_READ_SIZE, flags):
                    break
            except _WOULD_BLOCK:
                self._want(EVENT_READ)
                return
            except OSError:
                break
        else:
            self._want(EVENT_READ)
            return
        self._close()

    def _close(self) -> None:
        if self._done:
            return
        self._done = True
        self._want(0)
        self._server._forget_opening(self)
        try:
            self.sock.close()
        except OSError:  # pragma: no cover
            pass


class _AcceptRetry:
    """Watches a listener again after ``_ACCEPT_RETRY`` (``accept()`` failed for lack of
    file descriptors or memory)."""

    __slots__ = ("_server", "_listener", "_done")

    def __init__(self, server: Server, listener: socket.socket) -> None:
        self._server = server
        self._listener = listener
        self._done = False
        server._loop.schedule(self, time.monotonic() + _ACCEPT_RETRY)  # type: ignore[arg-type]

    def on_timer(self) -> None:
        if not self._done:
            self._done = True
            if not self._server._closing:
                self._server._watch(self._listener)

    def _timers_done(self) -> bool:
        return self._done


class Server:
    """A WebSocket server running ``handler(connection)`` in a thread per connection.

    A connection gets its thread once its request head is in (see ``_Opening``);
    ``max_connections`` counts those. It listens from construction on; use it as
    a context manager, call :meth:`serve_forever` to block, and :meth:`shutdown`
    to stop.
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
        self._openings: Set[_Opening] = set()  # waiting for their request, in the I/O thread
        self._batch: Optional[List[Tuple[_Opening, Optional[_Worker]]]] = None  # see _accept
        self._active = 0  # connections with a worker thread (from their request on)
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
            self._watch(listener)

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
        self._loop.call_soon(self._drop_openings)
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

    def _watch(self, listener: socket.socket) -> None:
        self._loop.add_acceptor(listener, functools.partial(self._accept, listener))

    def _accept(self, listener: socket.socket) -> None:
        # Workers for the requests read here wake once the batch is done: a worker
        # woken earlier would contend for the GIL with this thread's next accept().
        batch: List[Tuple[_Opening, Optional[_Worker]]] = []
        self._batch = batch
        try:
            for _ in range(64):
                try:
                    sock, _addr = listener.accept()
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:
                    if exc.errno in _ACCEPT_FULL and not self._closing:
                        logger.warning(
                            "cannot accept connections: %s (trying again in %.1f s)",
                            exc,
                            _ACCEPT_RETRY,
                        )
                        self._loop.remove_acceptor(listener)
                        _AcceptRetry(self, listener)
                    break
                if self._closing:
                    sock.close()
                    continue
                if sock.family in (socket.AF_INET, socket.AF_INET6):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                try:
                    opening = _Opening(self, sock)
                except (OSError, ValueError) as exc:  # pragma: no cover - e.g. closed meanwhile
                    logger.debug("cannot serve an accepted connection: %s", exc)
                    sock.close()
                    continue
                if opening.start():  # still waiting for its request
                    with self._lock:
                        self._openings.add(opening)
        finally:
            self._batch = None
            for opening, worker in batch:
                self._dispatch(opening, worker)

    def _start(self, opening: _Opening) -> None:
        """In the I/O thread: ``opening``'s request is in; give it a worker thread."""
        worker = None
        with self._lock:
            if self._closing:
                refusal: Optional[str] = "server shutting down"
            elif self._max_connections is not None and self._active >= self._max_connections:
                refusal = "server at capacity: max_connections reached"
            else:
                refusal = None
                self._active += 1
                self._openings.discard(opening)
                if self._idle:
                    worker = self._idle.pop()
        if refusal is not None:
            opening.refuse(503, refusal)
            return
        opening.hand_over()
        if self._batch is not None:
            self._batch.append((opening, worker))
        else:
            self._dispatch(opening, worker)

    def _dispatch(self, opening: _Opening, worker: Optional[_Worker]) -> None:
        """Wake ``worker`` for ``opening``, or start a thread for it."""
        if worker is not None:  # no thread start-up on the I/O thread's path
            worker.job = opening
            worker.wake.release()
            return
        try:
            thread = _start_thread(functools.partial(self._work, opening), "wscore-conn")
        except RuntimeError as exc:  # the system refused a thread (limits, memory)
            with self._lock:
                self._active -= 1
                self._openings.add(opening)
            logger.warning("cannot start a thread for a new connection: %s", exc)
            opening.take_back()
            opening.refuse(503, "server at capacity: cannot start a thread")
            return
        with self._lock:
            self._threads.add(thread)

    def _drop_openings(self) -> None:
        """In the I/O thread, at shutdown: close connections still sending their request."""
        with self._lock:
            openings = list(self._openings)
        for opening in openings:
            opening._close()

    def _forget_opening(self, opening: _Opening) -> None:
        with self._lock:
            self._openings.discard(opening)

    def _forget(self, conn: ServerConnection) -> None:
        with self._lock:
            self._connections.discard(conn)

    def _work(self, job: Optional[_Opening]) -> None:
        """A worker thread: serve connections, waiting idle between them.

        Threads are reused (a handler's thread-local data outlives its connection);
        at most ``_MAX_IDLE`` wait, each for ``_IDLE_TIMEOUT`` seconds at most.
        """
        worker: Optional[_Worker] = None
        try:
            while job is not None:
                try:
                    self._serve(job)
                except Exception:  # pragma: no cover - a bug in this module
                    logger.exception("error while serving a connection")
                job = None
                with self._lock:
                    self._active -= 1
                    if self._closing or len(self._idle) >= _MAX_IDLE:
                        return
                    if worker is None:
                        worker = _Worker()
                    self._idle.append(worker)
                job = self._next_job(worker)
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _next_job(self, worker: _Worker) -> Optional[_Opening]:
        """Wait in the idle pool for a connection; None to exit."""
        if not worker.wake.acquire(timeout=_IDLE_TIMEOUT):
            with self._lock:
                if worker in self._idle:  # nobody took it: leave the pool
                    self._idle.remove(worker)
                    return None
            worker.wake.acquire()  # taken meanwhile: its connection is on the way
        job, worker.job = worker.job, None
        return job

    def _serve(self, opening: _Opening) -> None:
        deadline = opening.deadline
        core = wscore.ServerConnection(self._config)
        conn = ServerConnection(self, opening.sock, core)
        core.receive_data(bytes(opening.head))
        opening.head = bytearray()  # the caller keeps the opening until the handler returns
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
        """Answer the request (reading the rest if need be); True if the connection is OPEN."""
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
            defer_accept(listener)
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
