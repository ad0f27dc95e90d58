"""The I/O thread: one selector that watches every connection nobody else reads.

A connection's socket is read by exactly one party at a time:

* the I/O thread (this module), while the connection's handler is busy elsewhere:
  it answers pings and closes, fills the bounded message queue, flushes pending
  writes and fires the core's timers;
* the thread blocked in ``recv()`` with an empty queue, which takes the socket
  back (unregisters it here), reads it directly, and gives it back on return.

So the common path (a handler waiting in ``recv()``) hands no message from one
thread to another. The loop also accepts new connections for servers, and a
socket pair wakes it when another thread needs it to notice a change.
"""

from __future__ import annotations

import heapq
import itertools
import selectors
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Set, Tuple

from .._common import logger

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["IOLoop", "client_loop"]

EVENT_READ = selectors.EVENT_READ
EVENT_WRITE = selectors.EVENT_WRITE
_MAX_SLEEP = 1.0
_ADOPT_AFTER = 0.05  # a handler away from recv() this long gets its socket watched here
_LAZY_TICK = 0.1
_COMPACT_MIN = 256  # timers kept before the heap is first swept of finished connections


class IOLoop:
    """A selector loop in a daemon thread, with a heap of connection deadlines."""

    def __init__(self, name: str) -> None:
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Lock()  # guards the heap and registrations
        self._heap: List[Tuple[float, int, Connection]] = []
        self._compact_at = _COMPACT_MIN  # heap size that triggers the next sweep
        self._seq = itertools.count()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, EVENT_READ, None)
        self._acceptors: Dict[int, Callable[[], None]] = {}
        self._running = True
        self._sleep_until = 0.0
        self._pending_calls: List[Callable[[], Any]] = []
        self._lazy: Dict[Connection, float] = {}
        self._watched: Set[Any] = set()  # what is registered in the selector
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # -- called from any thread -----------------------------------------------

    def add_acceptor(self, sock: socket.socket, on_ready: Callable[[], None]) -> None:
        """Call ``on_ready()`` in the loop whenever ``sock`` (a listener) is readable."""
        with self._lock:
            self._acceptors[sock.fileno()] = on_ready
            self._selector.register(sock, EVENT_READ, on_ready)

    def remove_acceptor(self, sock: socket.socket) -> None:
        """Stop watching a listening socket."""
        with self._lock:
            self._acceptors.pop(sock.fileno(), None)
            try:
                self._selector.unregister(sock)
            except (KeyError, ValueError):
                pass

    def watch(self, conn: Connection, events: int) -> None:
        """Watch ``conn``'s socket for ``events`` (0: stop watching)."""
        # Registration is tracked here: the selector's KeyError for an unknown
        # socket formats the socket's repr, two system calls per connection.
        with self._lock:
            sock = conn.sock
            watched = self._watched
            try:
                if events:
                    if conn in watched:
                        self._selector.modify(sock, events, conn)
                    else:
                        self._selector.register(sock, events, conn)
                        watched.add(conn)
                elif conn in watched:
                    watched.discard(conn)
                    self._selector.unregister(sock)
            except (KeyError, ValueError, OSError):
                watched.discard(conn)  # closed meanwhile

    def schedule(self, conn: Connection, deadline: float) -> None:
        """Make sure the loop looks at ``conn`` no later than ``deadline``."""
        with self._lock:
            heap = self._heap
            heapq.heappush(heap, (deadline, next(self._seq), conn))
            if len(heap) > self._compact_at:
                self._sweep()
            wake = deadline < self._sleep_until
        if wake:
            self.wake()

    def _sweep(self) -> None:
        """Drop the timers of finished connections (under the lock).

        A closed connection's timers would otherwise stay until their deadlines
        (keepalive, close timeout): a client opening and closing connections in a
        loop would hold thousands of them. Amortized: the heap doubles between sweeps.
        """
        live = [entry for entry in self._heap if not entry[2]._timers_done()]
        heapq.heapify(live)
        self._heap = live
        self._compact_at = max(_COMPACT_MIN, 2 * len(live))

    def adopt_later(self, conn: Connection) -> None:
        """``conn``'s reader left ``recv()``: watch its socket unless it comes back soon.

        Giving the socket back at once would cost two ``epoll_ctl`` calls per
        message; a handler that calls ``recv()`` again within ``_ADOPT_AFTER``
        keeps reading it itself, and a busy one is adopted within ~0.15 s.
        """
        now = time.monotonic()
        with self._lock:
            self._lazy[conn] = now
            wake = self._sleep_until > now + _LAZY_TICK
        if wake:
            self.wake()

    def wake(self) -> None:
        """Interrupt the loop's wait."""
        try:
            self._wake_w.send(b"\0")
        except OSError:  # buffer full (already woken) or closed
            pass

    def call_soon(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` in the loop thread soon."""
        with self._lock:
            self._pending_calls.append(fn)
        self.wake()

    def stop(self) -> None:
        """Stop the loop thread (connections must be closed by their owners)."""
        self._running = False
        self.wake()
        if threading.current_thread() is not self._thread:
            self._thread.join(5)

    # -- the loop -------------------------------------------------------------

    def _run(self) -> None:
        selector = self._selector
        while self._running:
            now = time.monotonic()
            with self._lock:
                timeout = _LAZY_TICK if self._lazy else _MAX_SLEEP
                if self._heap:
                    timeout = max(0.0, min(timeout, self._heap[0][0] - now))
                self._sleep_until = now + timeout
            try:
                ready = selector.select(timeout)
            except OSError:  # pragma: no cover - a socket closed under us
                continue
            self._sleep_until = 0.0
            for key, mask in ready:
                data = key.data
                if data is None:
                    try:
                        while self._wake_r.recv(4096):
                            pass
                    except OSError:
                        pass
                elif callable(data):
                    self._guard(data)
                else:
                    try:
                        data.on_ready(mask)
                    except Exception:  # pragma: no cover - a bug; keep the loop alive
                        logger.exception("error in the I/O thread")
            with self._lock:
                calls, self._pending_calls = self._pending_calls, []
            for fn in calls:
                self._guard(fn)
            self._fire_timers()
            if self._lazy:
                self._adopt_idle()
        try:
            self._selector.close()
            self._wake_r.close()
            self._wake_w.close()
        except OSError:  # pragma: no cover
            pass

    def _fire_timers(self) -> None:
        now = time.monotonic()
        due: List[Connection] = []
        with self._lock:
            heap = self._heap
            while heap and heap[0][0] <= now:
                due.append(heapq.heappop(heap)[2])
        for conn in due:
            self._guard(conn.on_timer)

    def _adopt_idle(self) -> None:
        limit = time.monotonic() - _ADOPT_AFTER
        with self._lock:
            idle = [conn for conn, since in self._lazy.items() if since <= limit]
            for conn in idle:
                del self._lazy[conn]
        for conn in idle:
            self._guard(conn.adopt)

    @staticmethod
    def _guard(fn: Callable[[], Any]) -> None:
        try:
            fn()
        except Exception:  # pragma: no cover - a bug; keep the loop alive
            logger.exception("error in the I/O thread")


_client_loop: Optional[IOLoop] = None
_client_loop_lock = threading.Lock()


def client_loop() -> IOLoop:
    """The process-wide I/O loop shared by every threaded client connection."""
    global _client_loop
    with _client_loop_lock:
        if _client_loop is None:
            _client_loop = IOLoop("wscore-client-io")
        return _client_loop
