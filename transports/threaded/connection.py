"""A WebSocket connection over a blocking-style API, driven by threads.

One :class:`Connection` wraps a socket and a ``wscore`` core. Whoever reads the
socket holds ``_lock`` while feeding the core:

* a thread in :meth:`Connection.recv` with nothing queued reads the socket itself
  (see ``ioloop``: it takes the socket away from the I/O thread and gives it back).
  On Linux, for plain sockets, it sleeps in a blocking ``recv`` (``SO_RCVTIMEO``
  bounds it), outside the lock: one system call per message instead of ``poll``
  then ``recv`` (through ``transports._gate`` when built: see ``_PARK_AFTER``);
  everything else passes ``MSG_DONTWAIT``, so it never blocks;
* otherwise the I/O thread reads it, answers pings and closes, and queues messages
  up to ``max_queue`` before it stops reading (then TCP pushes back on the peer).

Writes come from any thread under ``_lock``: bytes the kernel does not take at once
wait in ``_pending`` (the I/O thread or the next writer flushes them); ``send``
blocks while more than ``write_limit`` bytes wait.
"""

from __future__ import annotations

import random
import select
import socket
import ssl
import struct
import sys
import threading
import time
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Optional,
    Union,
)

import wscore
from wscore import (
    Closed,
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedOK,
    Fragment,
    Message,
    Pong,
    State,
)

from .._common import TransportOptions
from .ioloop import EVENT_READ, EVENT_WRITE, IOLoop

__all__ = ["Connection", "PongWaiter", "Data"]

Data = Union[str, bytes]
_CoreConnection = Union[wscore.ServerConnection, wscore.ClientConnection]

# Reads of 64 KiB split nearly every 64 KiB message across two reads (the frame
# header makes it 65,544 bytes), each then collected and joined: 256 KiB reads cut
# server CPU per 64 KiB message by a third. (Cheap since settle_malloc.)
_READ_SIZE = 262144
_HANDSHAKE_READ_SIZE = 65536  # an HTTP head; allocated per read in many threads
# What a reader asks for while it sleeps in recv(): the buffer is allocated for
# the whole wait, and 10,000 readers waiting at once leave that much resident
# (64 KiB: +5.7 KiB per idle connection, 1 KiB: +2.5 KiB, measured). A larger
# message takes the rest with non-blocking reads of _READ_SIZE.
_WAIT_READ_SIZE = 2048
_WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)
_SELECTOR, _THREAD, _LAZY = 0, 1, 2  # who reads the socket (_LAZY: a thread, soon the loop)
# A reader idle for a while hands its socket to the I/O thread and sleeps: each
# connection draws how long from _PARK_AFTER to twice that. With a fixed 1 s, 10,000
# clients opening 100 at a time had thousands of threads wake to park while the
# handshakes kept the GIL busy, and the server froze for 30 s to minutes: CPython's
# GIL waiters each wake every 5 ms (the switch interval), so thousands of them starve
# the holder. The compiled gate (transports/_gate.c, Linux: recv() and, for TLS and
# timed reads, poll()) cures that: woken readers queue on a plain mutex, one at a time
# waits for the GIL (18,000 connections at full load open in 8 s, even with a fixed
# 1 s park, where plain recv() froze; 18,000 TLS ones in 30-33 s). Without it
# (no compiler), the spread leaves a burst of openings over before its connections
# park, unless it lasts longer than _PARK_AFTER at full load. Keep it well below the
# usual keepalive interval (20 s): a burst of pongs then finds connections opened
# together parked, answered by the I/O thread rather than by their threads.
_PARK_AFTER = 5.0
_SEND_POLL = 1.0  # longest single wait of a blocked sender
_CORK_LIMIT = 16384  # answers held while more received messages wait (bytes, at most)
_CORK_DELAY = 0.002  # held answers not flushed by recv() go out from the I/O thread then
_LINGER = 2.0  # after the close, how long to wait for the peer's EOF
POLLIN, POLLOUT = select.POLLIN, select.POLLOUT
# A reader blocked in recv() wakes after its park time without data (then parks).
_BLOCKING_READS = sys.platform.startswith("linux") and hasattr(socket, "MSG_DONTWAIT")
_DONTWAIT: int = getattr(socket, "MSG_DONTWAIT", 0)
_POLLERR = select.POLLERR | select.POLLHUP | select.POLLNVAL
_NOTHING, _TIMED_OUT = object(), object()  # what _receive_blocking returns besides a message

_gated_recv: Optional[Callable[[int, int], Optional[bytes]]]
_gated_poll: Optional[Callable[[int, int, int], int]]
try:  # (optional, Linux) blocking waits that queue woken readers before the GIL
    from .._gate import poll as _gated_poll
    from .._gate import recv as _gated_recv
except ImportError:  # pragma: no cover - built with the package when a compiler is there
    _gated_recv = _gated_poll = None


class _Latch:
    """A one-shot event on a bare lock (``threading.Event`` costs ~1.5 KiB: a
    Condition with a deque), set once under the connection's lock."""

    __slots__ = ("_lock", "_set")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self._set = False

    def set(self) -> None:
        if not self._set:
            self._set = True
            self._lock.release()

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: Optional[float] = None) -> bool:
        """True once set; False if ``timeout`` seconds passed first."""
        if self._set:
            return True
        if self._lock.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
            self._lock.release()  # let the next waiter through
            return True
        return self._set


class PongWaiter:
    """What :meth:`Connection.ping` returns: wait on it for the pong."""

    __slots__ = ("_event", "latency", "_error")

    def __init__(self) -> None:
        self._event = threading.Event()
        self.latency: Optional[float] = None
        self._error: Optional[ConnectionClosed] = None

    def wait(self, timeout: Optional[float] = None) -> float:
        """Block until the pong arrives; return the round trip in seconds.

        Raises ``TimeoutError`` after ``timeout`` seconds, or ``ConnectionClosed``
        if the connection closed first.
        """
        if not self._event.wait(timeout):
            raise TimeoutError(f"no pong within {timeout} seconds")
        if self._error is not None:
            raise self._error
        assert self.latency is not None
        return self.latency

    def is_set(self) -> bool:
        """True once the pong arrived (or the connection closed)."""
        return self._event.is_set()

    def _resolve(self, latency: Optional[float], error: Optional[ConnectionClosed]) -> None:
        self.latency = latency
        self._error = error
        self._event.set()


class Connection:
    """One WebSocket connection; ``send`` is thread-safe, ``recv`` has one caller at a time."""

    # Slots: an instance dict of these ~30 attributes is ~1.7 KiB per connection.
    # ``__dict__`` stays, created on first use, for the attributes applications
    # like to hang on a connection (``connection.user = ...``).
    __slots__ = (
        "__dict__", "__weakref__", "_closed", "_closed_event", "_core", "_corked", "_draining",
        "_fd", "_flags", "_force_close_at", "_interest", "_lingering", "_lock", "_loop",
        "_max_queue", "_messages", "_park_after", "_parked", "_partial", "_pending", "_poll",
        "_pongs", "_reader", "_recv_busy", "_recv_guard", "_scheduled", "_send_lock",
        "_sock_closed", "_streaming", "_wpoll", "_write_limit", "local_address",
        "remote_address", "sock",
    )

    def __init__(
        self,
        sock: socket.socket,
        core: _CoreConnection,
        loop: IOLoop,
        options: TransportOptions,
    ) -> None:
        self.sock = sock
        self._core = core
        self._loop = loop
        self._max_queue = options.max_queue
        self._write_limit = options.write_limit
        self._streaming = core.config.streaming
        self._lock = threading.Lock()
        self._recv_guard = threading.Lock()
        self._send_lock = threading.Lock()
        self._messages: List[Any] = []  # at most max_queue: pop(0) is cheap, a deque is 0.7 KiB
        self._partial: List[Data] = []  # fragments of a message recv() timed out in
        self._pending = bytearray()  # written from the front, appended at the back
        self._corked = False  # answers held in the core for one send() (see send)
        self._reader = _THREAD  # the opening handshake is read by its thread
        self._interest = 0
        self._flags = 0  # MSG_DONTWAIT once the socket is in blocking mode (_start_io)
        self._recv_busy = False  # a reader sleeps in a blocking recv(): keep the fd open
        self._scheduled: Optional[float] = None
        self._draining = False  # we closed: keep reading for the peer's close
        self._closed: Optional[Closed] = None
        self._sock_closed = False
        self._force_close_at: Optional[float] = None
        self._lingering = False  # closed, FIN sent: reading until the peer's EOF
        self._closed_event = _Latch()
        self._parked: Optional[_Latch] = None  # set: a recv() sleeps, the I/O thread reads
        self._pongs: Dict[bytes, PongWaiter] = {}
        self._fd = sock.fileno()
        self._poll: Optional[Any] = None
        self._park_after = _PARK_AFTER * (1.0 + random.random())  # see _PARK_AFTER
        self._wpoll: Optional[Any] = None
        try:
            self.remote_address: Any = sock.getpeername()
        except OSError:
            self.remote_address = None
        try:
            self.local_address: Any = sock.getsockname()
        except OSError:  # pragma: no cover
            self.local_address = None

    # -- properties -----------------------------------------------------------

    @property
    def request(self) -> Optional[wscore.Request]:
        """The opening HTTP request (path, headers)."""
        return self._core.request

    @property
    def path(self) -> str:
        """The request's path, without the query string."""
        request = self._core.request
        return request.path if request is not None else ""

    @property
    def response(self) -> Optional[wscore.Response]:
        """The opening HTTP response."""
        return self._core.response

    @property
    def subprotocol(self) -> Optional[str]:
        """The negotiated subprotocol, if any."""
        return self._core.subprotocol

    @property
    def state(self) -> State:
        """CONNECTING, OPEN, CLOSING or CLOSED."""
        return self._core.state

    @property
    def close_code(self) -> Optional[int]:
        """The close code once closed (1006 if the connection dropped)."""
        return self._core.close_code

    @property
    def close_reason(self) -> Optional[str]:
        """The close reason once closed."""
        return self._core.close_reason

    @property
    def latency(self) -> Optional[float]:
        """Round trip of the latest answered ping, in seconds."""
        return self._core.latency

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.remote_address} {self.state.name}>"

    # -- receiving ------------------------------------------------------------

    def recv(self, timeout: Optional[float] = None) -> Data:
        """Return the next message: ``str`` (text) or ``bytes`` (binary).

        Raises ``TimeoutError`` after ``timeout`` seconds, ``ConnectionClosedOK`` /
        ``ConnectionClosedError`` once the connection is closed and every message
        received before was returned, ``ConcurrencyError`` if another thread is
        already in ``recv``.
        """
        if not self._recv_guard.acquire(blocking=False):
            raise ConcurrencyError("another thread is already receiving on this connection")
        try:
            if not self._streaming:
                return self._next_item(timeout)  # type: ignore[no-any-return]
            deadline = None if timeout is None else time.monotonic() + timeout
            parts = self._partial  # kept across a timeout: the next call goes on
            while True:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                fragment: Fragment = self._next_item(left)
                parts.append(fragment.data)
                if fragment.final:
                    self._partial = []
                    return parts[0] if len(parts) == 1 else parts[0][:0].join(parts)  # type: ignore[arg-type]
        finally:
            self._recv_guard.release()

    def recv_streaming(self) -> Iterator[Data]:
        """Yield the fragments of the next message as they arrive.

        With ``streaming=False`` (the default) the whole message is one fragment.
        """
        if not self._recv_guard.acquire(blocking=False):
            raise ConcurrencyError("another thread is already receiving on this connection")
        try:
            if not self._streaming:
                yield self._next_item(None)
                return
            while self._partial:  # fragments a timed-out recv() had taken
                yield self._partial.pop(0)
            while True:
                fragment: Fragment = self._next_item(None)
                yield fragment.data
                if fragment.final:
                    return
        finally:
            self._recv_guard.release()

    def __iter__(self) -> Iterator[Data]:
        """Iterate over messages; stops quietly on a normal close."""
        try:
            while True:
                yield self.recv()
        except ConnectionClosedOK:
            return

    def _next_item(self, timeout: Optional[float]) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        owned = False
        try:
            while True:
                with self._lock:
                    buffered = False
                    if not self._messages and self._core.more_buffered:
                        # Parse what stopped at max_queue, or fail on the protocol error
                        # held back: every message before it was taken.
                        self._process(fire=True)
                        buffered = self._core.more_buffered
                    if self._messages:
                        item = self._messages.pop(0)
                        if self._reader == _SELECTOR and not self._interest:
                            if not self._sock_closed:
                                self._update_interest()  # resume reading after a full queue
                        return item
                    if self._closed is not None:
                        raise self._closed_error()
                    if self._corked:  # the batch is answered: before waiting for more
                        self._flush()
                    if not owned:
                        owned = True
                        self._reader = _THREAD  # from _LAZY: no system call at all
                        if self._interest:
                            self._interest = 0
                            self._loop.watch(self, 0)
                    blocking = (
                        self._flags
                        and deadline is None
                        and not self._pending
                        and not buffered
                    )
                    if blocking:
                        self._recv_busy = True
                    else:
                        wait = self._wait_time(deadline)
                        events = POLLIN | (POLLOUT if self._pending else 0)
                if blocking:
                    item = self._receive_blocking()
                    if item is _TIMED_OUT:
                        owned = self._park(deadline)
                    elif item is not _NOTHING:
                        owned = False  # _receive_blocking gave the socket back
                        return item
                    continue
                if wait is not None and wait <= 0 and deadline is not None:
                    if time.monotonic() >= deadline:
                        raise TimeoutError(f"no message within {timeout} seconds")
                ready = self._poll_for(events, wait)
                if not ready and (deadline is None or time.monotonic() < deadline):
                    owned = self._park(deadline)
                    continue
                with self._lock:
                    if self._sock_closed:
                        continue
                    if ready & (POLLIN | _POLLERR):
                        self._read_some()
                    if ready & POLLOUT:
                        self._flush()
                    if self._closed is None:
                        self._run_timers()
        finally:
            if owned:
                with self._lock:
                    if not self._sock_closed:
                        self._reader = _LAZY
                        self._loop.adopt_later(self)
                    else:
                        self._reader = _SELECTOR

    def _receive_blocking(self) -> Any:
        """Sleep in ``recv`` until data comes (outside the lock).

        Returns the next message if one came (the socket then goes back to the
        I/O thread in the same locked section, as ``_next_item`` would: the
        common case costs one lock round trip), ``_NOTHING`` if the caller must
        look again, ``_TIMED_OUT`` after its park time without any data
        (``SO_RCVTIMEO``): then the caller parks.
        """
        try:
            if _gated_recv is not None:
                # Thousands of readers may wake at once (their park time passing
                # together after a burst of connections): the gate lets one at a
                # time wait for the GIL, so they do not starve its holder.
                data: Optional[bytes] = _gated_recv(self._fd, _WAIT_READ_SIZE)
            else:
                data = self.sock.recv(_WAIT_READ_SIZE)
        except _WOULD_BLOCK:
            data = None
        except OSError:
            data = b""
        with self._lock:
            self._recv_busy = False
            if self._sock_closed:
                self._close_fd()  # _close_socket left it open for us
                return _NOTHING
            if data is None:
                return _TIMED_OUT
            self._read_some(data)
            if self._closed is None:
                self._run_timers()
            if not self._messages or self._sock_closed:
                return _NOTHING
            self._reader = _LAZY
            self._loop.adopt_later(self)
            return self._messages.pop(0)

    def _wait_time(self, deadline: Optional[float]) -> Optional[float]:
        """How long a reader may sleep in ``poll`` before it parks (see ``_park``).

        The core's timers are the I/O thread's job (``on_timer``), whoever reads
        the socket, so the reader wakes only for data or its own ``deadline``.
        """
        wait = self._park_after
        if deadline is not None:
            wait = min(wait, deadline - time.monotonic())
        return max(0.0, wait)

    def _park(self, deadline: Optional[float]) -> bool:
        """The reader found nothing for its park time: give the socket to the I/O thread.

        The thread then sleeps on a latch until a message, the close or a held-back
        failure comes (``_dispatch``), the socket closes, or ``deadline`` passes.
        Meanwhile the I/O thread answers pings on its own: 10,000 idle connections
        answer a burst of pings from one loop, without waking 10,000 threads.
        Returns True if it did not park (the caller keeps the socket), False once
        it slept (the I/O thread has the socket; ``recv`` takes it back if needed).
        """
        with self._lock:
            if self._sock_closed or self._messages or self._closed is not None:
                return True  # owned: the loop will find out at once
            latch = self._parked = _Latch()
            self._reader = _SELECTOR
            self._update_interest()
            self._schedule()
        latch.wait(None if deadline is None else deadline - time.monotonic())
        with self._lock:
            self._parked = None
        return False

    def _poll_for(self, events: int, wait: Optional[float]) -> int:
        ms = -1 if wait is None else int(wait * 1000) + (1 if wait > 0 else 0)
        if _gated_poll is not None:  # TLS readers, timed recv(): see _receive_blocking
            try:
                return _gated_poll(self._fd, events, ms)
            except OSError:  # pragma: no cover
                return _POLLERR
        poller = self._poll
        if poller is None:
            poller = self._poll = select.poll()
            poller.register(self._fd, events)
        else:
            poller.modify(self._fd, events)
        try:
            result = poller.poll(ms)
        except OSError:  # pragma: no cover
            return _POLLERR
        mask = 0
        for _, ev in result:
            mask |= ev
        return mask

    # -- sending --------------------------------------------------------------

    def send(self, message: Union[Data, bytearray, memoryview, Iterable[Data]]) -> None:
        """Send a message: ``str`` as text, bytes-like as binary, an iterable as fragments.

        Thread-safe: each message goes out whole. Blocks while more than
        ``write_limit`` bytes wait to be written. Raises ``ConnectionClosed`` once
        the connection is closing or closed.
        """
        with self._send_lock:
            if isinstance(message, (str, bytes, bytearray, memoryview)):
                with self._lock:
                    if self._core.state is not State.OPEN:  # (_check_sendable, inlined)
                        raise self._closed_error()
                    self._core.send(message)
                    if (
                        (self._messages or self._core.more_buffered)
                        and not self._pending
                        and self._core.bytes_to_send < _CORK_LIMIT
                    ):
                        # More received messages wait for the handler: the answers to
                        # a batch leave in one send(), when recv() finds the queue
                        # empty, or from the I/O thread after _CORK_DELAY at the latest.
                        if not self._corked:
                            self._corked = True
                            # (Not _scheduled: this extra timer leaves the regular one be.)
                            self._loop.schedule(self, time.monotonic() + _CORK_DELAY)
                        return
                    self._flush()
                    if not self._pending or len(self._pending) <= self._allowed_pending():
                        return
                self._wait_drained()
                return
            if isinstance(message, dict):
                raise TypeError("send() takes str, bytes or an iterable of them, not a dict")
            iterator = iter(message)
            try:
                previous = next(iterator)
            except StopIteration:
                raise ValueError("send() got an empty iterable of fragments") from None
            for fragment in iterator:
                self._send_fragment(previous, False)
                previous = fragment
            self._send_fragment(previous, True)

    def _send_fragment(self, data: Data, final: bool) -> None:
        with self._lock:
            self._check_sendable()
            self._core.send(data, final)
            self._flush()
        self._wait_drained()

    def _check_sendable(self) -> None:
        if self._core.state is not State.OPEN:
            raise self._closed_error()

    def _allowed_pending(self) -> int:
        """How many unsent bytes ``send`` may leave behind.

        ``write_limit``, unless a thread blocked in ``recv()`` owns the socket:
        it only waits for POLLOUT when bytes were pending as it started waiting,
        so leftovers could sit unsent until its next wake-up; flush them here.
        """
        return 0 if self._reader == _THREAD else self._write_limit

    def _wait_drained(self) -> None:
        while True:
            with self._lock:
                if len(self._pending) <= self._allowed_pending():
                    return
                if self._sock_closed:
                    raise self._closed_error()
            poller = self._wpoll
            if poller is None:
                poller = self._wpoll = select.poll()
                poller.register(self._fd, POLLOUT)
            try:
                poller.poll(int(_SEND_POLL * 1000))
            except OSError:  # pragma: no cover
                pass
            with self._lock:
                if not self._sock_closed:
                    self._flush()

    def ping(self, data: Optional[Union[str, bytes]] = None) -> PongWaiter:
        """Send a ping; return a :class:`PongWaiter` whose ``wait()`` gives the latency."""
        payload = data.encode() if isinstance(data, str) else data
        waiter = PongWaiter()
        with self._lock:
            self._check_sendable()
            key = self._core.ping(payload)
            self._pongs[key] = waiter
            self._flush()
            self._adopt()  # someone must read the pong
        return waiter

    def pong(self, data: Union[str, bytes] = b"") -> None:
        """Send an unsolicited pong."""
        payload = data.encode() if isinstance(data, str) else data
        with self._lock:
            self._check_sendable()
            self._core.pong(payload)
            self._flush()

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection: send a close frame and wait for the peer's answer.

        Returns once the connection is closed, after at most ``close_timeout``.
        Closing a closed connection does nothing.
        """
        wscore.check_close_code(code, reason)
        self.start_close(code, reason)
        timeout = self._core.config.close_timeout
        if not self._closed_event.wait(None if timeout is None else timeout + 2.0):
            self.abort()  # pragma: no cover - the core's close timer fires first

    def start_close(self, code: int = 1000, reason: str = "") -> None:
        """Send the close frame without waiting for the answer (no-op unless OPEN)."""
        with self._lock:
            if self._core.state is State.OPEN:
                self._core.close(code, reason)
                self._draining = True
                self._process()
                self._adopt()
                if not self._sock_closed:
                    self._schedule()  # the close timeout, even while a reader owns it

    def abort(self) -> None:
        """Drop the connection at once, without a closing handshake."""
        with self._lock:
            if self._closed is None:
                self._core.receive_data(b"")
                self._process()
            self._close_socket()

    # -- the machinery (always under self._lock) -------------------------------

    def adopt(self) -> None:
        """Let the I/O thread read the socket (its reader thread left ``recv()``)."""
        if self._reader != _LAZY:
            # A reader took the socket back (read without the lock: a hint; a reader
            # that leaves again queues a new adopt_later). Most ticks of a busy
            # server end here, without contending for the connection's lock.
            return
        with self._lock:
            self._adopt()

    def _adopt(self) -> None:
        if self._reader == _LAZY:
            self._reader = _SELECTOR
        if self._reader == _SELECTOR and not self._sock_closed:
            self._update_interest()
            self._schedule()

    def on_ready(self, mask: int) -> None:
        """The I/O thread saw the socket ready."""
        with self._lock:
            if self._sock_closed or self._reader != _SELECTOR:
                return
            if mask & EVENT_READ:
                self._read_some()
            if mask & EVENT_WRITE and not self._sock_closed:
                self._flush()
            if not self._sock_closed:
                self._update_interest()
                self._schedule()

    def _timers_done(self) -> bool:
        """True once no timer of this connection can matter (the I/O loop drops them)."""
        return self._sock_closed

    def on_timer(self) -> None:
        """The I/O thread's timer for this connection fired."""
        with self._lock:
            if self._corked and not self._sock_closed:
                self._flush()
            if self._scheduled is not None and time.monotonic() < self._scheduled:
                # A cork timer, or one whose deadline moved: the timer at _scheduled
                # is still in the loop's heap. (Scheduling it again would pile up a
                # copy per corked batch until that deadline.)
                return
            self._scheduled = None
            if self._sock_closed:
                return
            if self._force_close_at is not None and time.monotonic() >= self._force_close_at:
                self._close_socket()
                return
            self._run_timers()  # whoever reads: a reader thread sleeps until data comes
            if not self._sock_closed:
                if self._reader == _SELECTOR:
                    self._update_interest()
                self._schedule()

    def _run_timers(self) -> None:
        deadline = self._core.next_deadline()
        if deadline is not None and time.monotonic() >= deadline:
            self._core.handle_timers()
            self._process()

    def _schedule(self) -> None:
        deadline = self._core.next_deadline()
        if self._force_close_at is not None:
            deadline = (
                self._force_close_at if deadline is None else min(deadline, self._force_close_at)
            )
        if deadline is None:
            return
        if self._scheduled is None or deadline < self._scheduled:
            self._scheduled = deadline
            self._loop.schedule(self, deadline)

    def _update_interest(self) -> None:
        interest = 0
        if self._lingering or (
            self._closed is None
            and not self._core.more_buffered
            and (len(self._messages) < self._max_queue or self._draining)
        ):
            interest = EVENT_READ
        if self._pending:
            interest |= EVENT_WRITE
        if interest != self._interest:
            self._interest = interest
            self._loop.watch(self, interest)

    def _read_some(self, first: Optional[bytes] = None) -> None:
        """Read what the socket has (``first``: what a blocking ``recv`` got) and
        feed it to the core."""
        core = self._core
        sock = self.sock
        flags = self._flags
        tls_pending = sock.pending if isinstance(sock, ssl.SSLSocket) else None
        if first is None and core.more_buffered:
            self._process()
            if core.more_buffered:
                return
        if self._lingering:
            for _ in range(16):
                try:
                    if not sock.recv(_READ_SIZE, flags):
                        break
                except _WOULD_BLOCK:
                    return
                except OSError:
                    break
            else:
                return
            self._close_socket()
            return
        for _ in range(16):
            if first is not None:
                data, first, size = first, None, _WAIT_READ_SIZE
            else:
                size = _READ_SIZE
                try:
                    data = sock.recv(size, flags)
                except _WOULD_BLOCK:
                    break
                except OSError:
                    data = b""
            self._set_room()
            core.receive_data(data)
            self._dispatch(room=False)  # (the room is as just set)
            if (
                not data
                or (len(data) < size and not (tls_pending and tls_pending()))  # the usual way out
                or core.more_buffered
                or self._closed is not None
                or len(self._messages) >= self._max_queue
            ):
                break
        self._after_events()

    def _process(self, fire: bool = False) -> None:
        self._dispatch(fire)
        self._after_events()

    def _set_room(self) -> None:
        """Let the core parse ahead only as many messages as the queue can take."""
        self._core.max_pending_messages = (
            None if self._draining else max(1, self._max_queue - len(self._messages))
        )

    def _dispatch(self, fire: bool = False, room: bool = True) -> None:
        core = self._core
        if core.failure_pending and not fire:
            # The peer broke the protocol after messages the application may still
            # answer: the failure waits for recv() to find the queue empty (_next_item).
            if self._parked is not None:
                self._parked.set()  # a recv() is waiting: that is now
            return
        if room:
            self._set_room()
        events = core.events()
        if not events:
            return
        messages = self._messages
        for event in events:
            kind = type(event)
            if kind is Message:
                if len(messages) < self._max_queue or not self._draining:
                    messages.append(event.data)  # type: ignore[attr-defined]
            elif kind is Fragment:
                messages.append(event)
            elif kind is Pong:
                for key in event.acknowledged:  # type: ignore[attr-defined]
                    waiter = self._pongs.pop(key, None)
                    if waiter is not None:
                        waiter._resolve(event.latency, None)  # type: ignore[attr-defined]
            elif kind is Closed:
                self._closed = event  # type: ignore[assignment]
        if self._parked is not None and (messages or self._closed is not None):
            self._parked.set()

    def _after_events(self) -> None:
        if not self._corked or self._core.state is not State.OPEN:
            self._flush()  # (held answers wait for theirs, unless closing: see send)
        if self._closed is not None and not self._sock_closed:
            if self._pending and self._force_close_at is None:
                self._force_close_at = time.monotonic() + _LINGER
                if self._reader == _SELECTOR:
                    self._update_interest()
                    self._schedule()
            elif not self._pending and not self._lingering:
                if self._closed.clean and isinstance(self._core, wscore.ServerConnection):
                    # Nothing unread can turn our FIN into a reset. The server
                    # closes TCP first (RFC 6455, 7.1.1), without waiting for EOF.
                    self._close_socket()
                else:
                    self._linger()

    def _linger(self) -> None:
        """Everything is written: send FIN, then read until the peer closes too.

        Closing at once would make the kernel answer the peer's unread bytes (say
        the rest of an oversized message) with a reset, which can destroy our
        close frame before the peer reads it. So wait for EOF, up to ``_LINGER``.
        """
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close_socket()
            return
        self._lingering = True
        self._force_close_at = time.monotonic() + _LINGER
        self._closed_event.set()
        self._adopt()

    def _flush(self) -> None:
        self._corked = False
        data = self._core.data_to_send()
        pending = self._pending
        if data:
            if not pending:
                try:
                    sent = self.sock.send(data, self._flags)
                except _WOULD_BLOCK:
                    sent = 0
                except OSError:
                    self._broken()
                    return
                if sent == len(data):
                    return
                pending += memoryview(data)[sent:]
            else:
                pending += data
        while pending:
            try:
                sent = self.sock.send(pending, self._flags)
            except _WOULD_BLOCK:
                return
            except OSError:
                self._broken()
                return
            del pending[:sent]  # O(1): the buffer's start moves
            if pending:
                return  # the kernel took what it could

    def _broken(self) -> None:
        """The socket failed while writing: drop what waits and treat it as EOF."""
        self._pending.clear()
        if self._closed is None:
            self._core.receive_data(b"")
            self._dispatch()
        self._close_socket()

    def _close_socket(self) -> None:
        if self._sock_closed:
            return
        self._sock_closed = True
        if self._closed is None:
            self._core.receive_data(b"")
            self._dispatch()
        if self._interest:
            self._interest = 0
            self._loop.watch(self, 0)
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # also wakes a blocking recv()
        except OSError:
            pass
        if not self._recv_busy:
            # Else the reader closes it when its recv() returns: closing an fd that
            # another thread reads lets a new connection reuse the number under it.
            self._close_fd()
        error = self._closed_error()
        for waiter in self._pongs.values():
            waiter._resolve(None, error)
        self._pongs.clear()
        self._closed_event.set()
        if self._parked is not None:
            self._parked.set()
        self._on_closed()

    def _close_fd(self) -> None:
        try:
            self.sock.close()
        except OSError:  # pragma: no cover
            pass

    def _on_closed(self) -> None:
        """Hook for servers to forget the connection."""

    def _closed_error(self) -> ConnectionClosed:
        closed = self._closed
        if closed is None:  # closing: our close frame is out
            return ConnectionClosedOK(1000, "the connection is closing")
        return closed.exception()

    # -- the opening handshake (blocking, in the connection's own thread) -------

    def _handshake_io(self, deadline: Optional[float]) -> List[wscore.Event]:
        """Write what the core has to send, then read until events come."""
        sock = self.sock
        # Frames that come with the handshake (behind the 101, or before accept())
        # are parsed as later ones are: within max_queue, a protocol error held back.
        self._set_room()
        data = self._core.data_to_send()
        if data:
            self._send_all(data, deadline)
        first = True
        while True:
            events = self._core.events()
            if events:
                return events
            if first and _BLOCKING_READS and sock.gettimeout() is None:
                # A server's accepted socket: the request is usually here already
                # (one recv; no ioctl for a timeout, no poll).
                first = False
                try:
                    self._core.receive_data(sock.recv(_HANDSHAKE_READ_SIZE, _DONTWAIT))
                    continue
                except _WOULD_BLOCK:
                    pass
                except OSError:
                    self._core.receive_data(b"")
                    continue
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    self._core.handle_timers()
                    continue
                sock.settimeout(left)
            try:
                chunk = sock.recv(_HANDSHAKE_READ_SIZE)
            except socket.timeout:
                continue
            except OSError:
                chunk = b""
            self._core.receive_data(chunk)

    def _send_all(self, data: bytes, deadline: Optional[float]) -> None:
        """Write a handshake message, within ``deadline``."""
        sock = self.sock
        if _BLOCKING_READS and sock.gettimeout() is None:
            try:  # it fits the kernel's buffer: no ioctl for a timeout, no poll
                sent = sock.send(data, _DONTWAIT)
            except _WOULD_BLOCK:
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
        sock.settimeout(None if deadline is None else max(0.001, deadline - time.monotonic()))
        sock.sendall(data)

    def _start_io(self) -> None:
        """The handshake is over: the socket is the I/O thread's, or its handler's.

        The I/O thread gets it only if the handler is not back in ``recv()``
        soon (see ``IOLoop.adopt_later``): a handler that reads at once costs no
        registration and no wake-up of the I/O thread.
        """
        sock = self.sock
        if _BLOCKING_READS and not isinstance(sock, ssl.SSLSocket):
            if sock.gettimeout() is not None:
                sock.settimeout(None)
            park = self._park_after
            timeval = struct.pack("ll", int(park), int(park % 1 * 1e6))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
            self._flags = _DONTWAIT
        else:
            sock.setblocking(False)
        with self._lock:
            self._reader = _LAZY
            self._process()
            if not self._sock_closed:
                self._schedule()
                if self._reader == _LAZY:
                    self._loop.adopt_later(self)

    def _finish_handshake_write(self) -> None:
        """Write a handshake answer (e.g. an HTTP response) and close."""
        data = self._core.data_to_send()
        try:
            if data:
                self.sock.settimeout(5.0)
                self.sock.sendall(data)
        except OSError:
            pass
        with self._lock:
            self._dispatch()
            self._close_socket()
