"""The asyncio connection: an ``asyncio.Protocol`` that drives one wscore connection.

Bytes flow ``data_received`` -> ``core.receive_data`` -> events -> one
``transport.write`` per batch. Incoming messages wait in a bounded deque: reading
pauses when it holds ``max_queue`` messages and resumes when ``recv`` catches up.
``send`` waits while the transport's write buffer is above ``write_limit``. One
timer handle per connection follows ``core.next_deadline()``, rescheduled only
when that deadline moves. Once the core reports ``Closed`` the transport closes:
at once on a server after a clean closing handshake, after the server's FIN on a
client, and after a half-close and a short linger when the connection failed.

The core's clock is ``time.monotonic`` rather than ``loop.time``: uvloop's clock
has millisecond resolution, which would report a localhost ping latency as 0.
Deadlines are turned into ``loop.call_later`` delays, so any loop works.
"""

from __future__ import annotations

import asyncio
import time
from typing import (
    Any,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Dict,
    Iterable,
    List,
    Optional,
    Tuple,
    Union,
    cast,
)

from wscore import (
    Closed,
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    Fragment,
    Message,
    Pong,
    Request,
    Response,
    State,
    check_close_code,
)
from wscore._connection import _Connection as _CoreConnection

from .._common import TransportOptions, logger

__all__ = ["Connection", "broadcast", "Data"]

Data = Union[str, bytes]
_BytesLike = (bytes, bytearray, memoryview)
_MAX_PINGS = 64  # the core forgets older pings too
_OK_CODES = (1000, 1001, 1005)
_LINGER = 2.0  # at most this long after a failure, waiting for the peer to hang up
_CORK_LIMIT = 16384  # answers held for the end of a loop turn, at most (small messages)
#: The clock of the cores (pass it as ``clock=`` when making one).
CLOCK = time.monotonic


class Connection(asyncio.Protocol):
    """One WebSocket connection (server or client side), used from coroutines.

    Receive with ``await recv()``, ``async for message in connection`` or
    ``recv_streaming()``; send with ``await send(...)``; end with ``await close()``.
    """

    # Slots: an instance dict of these ~30 attributes is ~1.7 KiB per connection.
    # ``__dict__`` stays, created on first use, for the attributes applications
    # like to hang on a connection (``websocket.user = ...``).
    __slots__ = (
        "__dict__", "__weakref__", "_abort_handle", "_close_event", "_close_started",
        "_drainers", "_eof", "_flush_pending", "_grace", "_keep_reading", "_local_close",
        "_loop", "_lost", "_lost_waiter", "_low_queue", "_max_queue", "_partial",
        "_paused_reading", "_paused_writing", "_pings", "_queue", "_receiving", "_send_lock",
        "_streaming", "_timer", "_timer_at", "_transport", "_waiter", "_write_limit", "core",
    )

    _is_client = False

    def __init__(
        self,
        core: _CoreConnection,
        options: TransportOptions,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.core = core
        self._loop = loop
        self._transport: Optional[asyncio.Transport] = None
        self._max_queue = options.max_queue
        self._low_queue = options.max_queue // 4
        self._write_limit = options.write_limit
        self._streaming = core.config.streaming
        timeout = core.config.close_timeout
        self._grace = timeout if timeout is not None else 10.0
        # Receiving.
        self._queue: List[Any] = []  # about max_queue at most: pop(0) is cheap, a deque is 0.7 KiB
        self._waiter: Optional[asyncio.Future[None]] = None
        self._receiving = False
        self._partial: List[Data] = []  # streaming recv(): fragments taken so far
        self._paused_reading = False
        self._keep_reading = False  # closing: never pause again
        # Sending.
        self._paused_writing = False
        self._flush_pending = False  # a _flush() is scheduled
        self._drainers: List[asyncio.Future[None]] = []
        self._send_lock = asyncio.Lock()
        self._pings: Dict[bytes, asyncio.Future[float]] = {}
        self._local_close: Optional[Tuple[int, str]] = None
        self._close_started: Optional[float] = None
        # Timers and the end.
        self._timer: Optional[asyncio.TimerHandle] = None
        self._timer_at: Optional[float] = None
        self._abort_handle: Optional[asyncio.TimerHandle] = None
        self._close_event: Optional[Closed] = None
        self._eof = False
        self._lost = False
        self._lost_waiter: asyncio.Future[None] = loop.create_future()

    # -- asyncio.Protocol -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        transport.set_write_buffer_limits(high=self._write_limit)
        self._process()

    def data_received(self, data: bytes) -> None:
        core = self.core
        if not self._keep_reading:
            # Parse no more messages than the queue has room for: a small read may
            # inflate into many large messages; the rest waits, compressed, in the core.
            room = self._max_queue - len(self._queue)
            core.max_pending_messages = room if room > 0 else 1
        core.receive_data(data)
        self._process()

    def eof_received(self) -> Optional[bool]:
        self._eof = True
        if self.core.state is not State.CLOSED:
            self.core.receive_data(b"")
            self._process()
        return False  # let the transport close itself

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self._lost = True
        if self.core.state is not State.CLOSED:
            self.core.receive_data(b"")
            self._process()
        for handle in (self._timer, self._abort_handle):
            if handle is not None:
                handle.cancel()
        self._timer = self._abort_handle = None
        self._wake_drainers()
        if not self._lost_waiter.done():
            self._lost_waiter.set_result(None)

    def pause_writing(self) -> None:
        self._paused_writing = True

    def resume_writing(self) -> None:
        self._paused_writing = False
        self._wake_drainers()

    # -- the engine ---------------------------------------------------------------

    def _process(self, fire: bool = False) -> None:
        """Handle the core's events, write its output, follow its next deadline.

        A protocol error the core holds back (``failure_pending``) waits until the
        application asks for a message with none queued (``fire``, or a ``recv``
        already waiting): its answers to the messages before it go out first.
        """
        core = self.core
        if core.failure_pending and not (fire or (self._waiter is not None and not self._queue)):
            events: List[Any] = []
            transport = self._transport
            if not self._paused_reading and not self._keep_reading and transport is not None:
                self._paused_reading = True  # what the peer sends now is dropped anyway
                transport.pause_reading()
        else:
            events = core.events()
        if events:
            queue = self._queue
            queued = False
            for event in events:
                cls = type(event)
                if cls is Message:
                    queue.append(event.data)
                    queued = True
                elif cls is Fragment:
                    queue.append(event)
                    queued = True
                elif cls is Pong:
                    self._on_pong(event)
                elif cls is Closed:
                    self._on_closed(event)
                else:
                    self._on_event(event)
            if queued:
                waiter = self._waiter
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
                if (
                    (len(queue) >= self._max_queue or core.more_buffered)
                    and not self._paused_reading
                    and not self._keep_reading
                    and self._transport is not None
                ):
                    self._paused_reading = True
                    self._transport.pause_reading()
        if not self._flush_pending or self._close_event is not None:
            # (With a flush pending, answers corked this turn leave with it, in one
            # write, instead of one write each time the handler's queue is refilled.)
            self._write_out()
        if self._close_event is not None:
            self._teardown()
        deadline = core.next_deadline()
        if deadline != self._timer_at:
            self._set_timer(deadline)

    def _set_timer(self, deadline: Optional[float]) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None and not self._lost:
            delay = deadline - CLOCK()
            self._timer = self._loop.call_later(delay if delay > 0 else 0, self._on_timer)

    def _on_timer(self) -> None:
        deadline = self._timer_at
        self._timer = None
        self._timer_at = None
        now = CLOCK()
        if deadline is not None and now < deadline:  # timers may fire a hair early
            now = deadline
        self.core.handle_timers(now)
        self._process()

    def _on_event(self, event: Any) -> None:
        """Handshake events (RequestReceived, Opened): the subclasses take them."""

    def _on_pong(self, event: Pong) -> None:
        pings = self._pings
        if not pings:
            return
        latency = event.latency if event.latency is not None else 0.0
        for payload in event.acknowledged:
            waiter = pings.pop(payload, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(latency)

    def _on_closed(self, event: Closed) -> None:
        self._close_event = event
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self._pings:
            exc = self._closed_exc()
            for ping in self._pings.values():
                if not ping.done():
                    ping.set_exception(exc)
                    ping.exception()  # nobody may be waiting: no "never retrieved" warning
            self._pings.clear()
        self._wake_drainers()

    def _teardown(self) -> None:
        """After Closed: close the transport (a client waits briefly for the server's FIN)."""
        transport = self._transport
        if transport is None or self._lost or self._abort_handle is not None:
            return
        event = self._close_event
        assert event is not None
        if self._paused_reading:
            self._paused_reading = False
            transport.resume_reading()
        self._keep_reading = True
        if self._eof or transport.is_closing():
            self._close_transport()
            return
        clean = event.clean
        if clean and self._is_client:
            # RFC 6455, 7.1.1: the server closes TCP first; wait for its FIN a while
            # (what is left of close_timeout when we started the closing handshake).
            wait = self._grace
            if self._close_started is not None:
                wait = max(0.0, self._close_started + self._grace - CLOCK())
            self._abort_handle = self._loop.call_later(wait, self._close_transport)
        elif not clean and transport.can_write_eof():
            # Lingering close: our last words (a close frame after an error, an HTTP
            # answer) must not be lost to a reset because the peer's data is still
            # unread. Shut our side, drop what still comes until the peer hangs up.
            transport.write_eof()
            wait = min(self._grace, _LINGER)
            self._abort_handle = self._loop.call_later(wait, self._close_transport)
        else:
            self._close_transport()

    def _close_transport(self) -> None:
        transport = self._transport
        if transport is None or self._lost:
            return
        transport.close()
        if self._abort_handle is not None:
            self._abort_handle.cancel()
            self._abort_handle = None
        if transport.get_write_buffer_size():
            # Close flushes first: a peer that never reads is cut off after the grace
            # period. (With nothing left to write, close() is final at once.)
            self._abort_handle = self._loop.call_later(self._grace, transport.abort)

    def _wake_drainers(self) -> None:
        drainers = self._drainers
        if drainers:
            self._drainers = []
            for waiter in drainers:
                if not waiter.done():
                    waiter.set_result(None)

    def _closed_exc(self) -> ConnectionClosed:
        """The exception that tells the connection is (being) closed."""
        event = self._close_event
        if event is not None:
            return event.exception()
        code, reason = self._local_close or (1006, "")
        cls = ConnectionClosedOK if code in _OK_CODES else ConnectionClosedError
        return cls(code, reason)

    # -- receiving ------------------------------------------------------------------

    def _queue_waiter(self) -> Optional[asyncio.Future[None]]:
        """With the queue empty: a future to await for the next item, or None if the
        queue should be looked at again. Raises ConnectionClosed if no item will come."""
        if self._close_event is not None or self._lost:
            raise self._closed_exc()
        if self.core.failure_pending:
            self._process(fire=True)  # every message before it was taken: fail now
            return None
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._waiter = waiter
        return waiter

    async def _wait_queue(self, deadline: Optional[float] = None) -> None:
        """Wait until the queue has an item; raise ConnectionClosed if none will come.

        Raises ``TimeoutError`` when ``deadline`` (on ``CLOCK``) passes first.
        """
        while not self._queue:
            waiter = self._queue_waiter()
            if waiter is None:
                continue
            try:
                if deadline is None:
                    await waiter
                else:
                    await asyncio.wait_for(waiter, max(0.0, deadline - CLOCK()))
            except asyncio.TimeoutError:
                raise TimeoutError("no message arrived in time") from None
            finally:
                self._waiter = None

    def _pop(self) -> Any:
        queue = self._queue
        item = queue.pop(0)
        if self._paused_reading and len(queue) <= self._low_queue:
            self._refill()
        return item

    def _refill(self) -> None:
        """The queue has room again: parse what the core held back, then read again."""
        core = self.core
        if core.more_buffered:
            core.max_pending_messages = self._max_queue - len(self._queue) or 1
            self._process()  # events() parses on
        if self._paused_reading and not core.more_buffered and len(self._queue) <= self._low_queue:
            self._paused_reading = False
            if self._transport is not None and not self._lost:
                self._transport.resume_reading()

    async def _recv_item(self, deadline: Optional[float] = None) -> Any:
        if not self._queue:
            await self._wait_queue(deadline)
        return self._pop()

    async def recv(self, timeout: Optional[float] = None) -> Data:
        """Receive the next message: ``str`` for text, ``bytes`` for binary.

        Raises :class:`wscore.ConnectionClosedOK` or :class:`wscore.ConnectionClosedError`
        once the connection is closed and every received message was read;
        :class:`wscore.ConcurrencyError` if another task is receiving; ``TimeoutError``
        if ``timeout`` seconds pass first (nothing is lost: the next call goes on).
        """
        if self._receiving:
            raise ConcurrencyError("recv() called while another task is receiving")
        queue = self._queue
        if queue and not self._streaming:
            return cast(Data, self._pop())
        deadline = None if timeout is None else CLOCK() + timeout
        self._receiving = True
        try:
            if not self._streaming:
                if deadline is None:
                    # _wait_queue without a timeout, inline: no coroutine per message.
                    while not queue:
                        waiter = self._queue_waiter()
                        if waiter is not None:
                            try:
                                await waiter
                            finally:
                                self._waiter = None
                elif not queue:
                    await self._wait_queue(deadline)
                return cast(Data, self._pop())
            # Fragments already taken stay in _partial if this call times out or is cancelled.
            parts = self._partial
            while True:
                fragment: Fragment = await self._recv_item(deadline)
                parts.append(fragment.data)
                if fragment.final:
                    break
            self._partial = []
            if len(parts) == 1:
                return parts[0]
            empty: Data = "" if isinstance(parts[0], str) else b""
            return empty.join(parts)  # type: ignore[arg-type]
        finally:
            self._receiving = False

    async def recv_streaming(self) -> AsyncIterator[Data]:
        """Yield the fragments of the next message as they arrive (with ``streaming``).

        Without ``streaming`` the whole message comes as one fragment. Iterate to the
        end: an abandoned iteration leaves the rest of that message unread.
        """
        if self._receiving:
            raise ConcurrencyError("recv_streaming() called while another task is receiving")
        self._receiving = True
        try:
            if not self._streaming:
                yield await self._recv_item()
                return
            while self._partial:  # left by a recv() that timed out mid-message
                yield self._partial.pop(0)
            while True:
                fragment: Fragment = await self._recv_item()
                yield fragment.data
                if fragment.final:
                    return
        finally:
            self._receiving = False

    def __aiter__(self) -> Connection:
        return self

    async def __anext__(self) -> Data:
        """``async for message in connection``: the next message; the loop ends on a
        normal close (ConnectionClosedError still raises)."""
        if self._queue and not self._streaming and not self._receiving:
            return cast(Data, self._pop())  # what recv() would do, without its coroutine
        try:
            return await self.recv()
        except ConnectionClosedOK:
            raise StopAsyncIteration from None

    # -- sending --------------------------------------------------------------------

    def _write_out(self) -> None:
        data = self.core.data_to_send()
        if data and not self._lost and self._transport is not None:
            self._transport.write(data)

    def _send_frame(self, data: Any, final: bool = True) -> None:
        core = self.core
        if core.state is not State.OPEN:
            raise self._closed_exc()
        core.send(data, final)
        if self._queue and core.bytes_to_send < _CORK_LIMIT:
            # More received messages wait for the handler: the answers to a batch
            # of them leave in one write (one system call), at the end of this
            # turn of the loop, instead of one write each.
            if not self._flush_pending:
                self._flush_pending = True
                self._loop.call_soon(self._flush)
        else:
            self._write_out()

    def _flush(self) -> None:
        self._flush_pending = False
        self._write_out()

    async def _drain(self) -> None:
        while self._paused_writing:
            if self._lost or self._close_event is not None:
                raise self._closed_exc()
            waiter = self._loop.create_future()
            self._drainers.append(waiter)
            await waiter

    async def send(
        self,
        message: Union[Data, bytearray, memoryview, Iterable[Data], AsyncIterable[Data]],
    ) -> None:
        """Send a message: ``str`` as text, bytes-like as binary.

        An iterable or async iterable of fragments (all ``str`` or all bytes-like)
        goes out as one fragmented message; other sends wait until it is complete.
        Waits while the write buffer is above ``write_limit``. Raises
        ``ConnectionClosed`` once the connection is closing or closed.
        """
        if isinstance(message, (str, bytes, bytearray, memoryview)):
            if self._send_lock.locked():  # a fragmented message is going out
                async with self._send_lock:
                    self._send_frame(message)
            else:
                self._send_frame(message)
            if self._paused_writing:
                await self._drain()
            return
        if isinstance(message, dict):
            raise TypeError("send() takes str, bytes or an iterable of fragments, not a dict")
        if hasattr(message, "__aiter__"):
            await self._send_fragments(cast(AsyncIterable[Data], message).__aiter__(), True)
        elif hasattr(message, "__iter__"):
            await self._send_fragments(iter(message), False)
        else:
            raise TypeError(f"send() cannot send {type(message).__name__}")

    async def _send_fragments(self, fragments: Any, is_async: bool) -> None:
        async with self._send_lock:
            try:
                previous = await fragments.__anext__() if is_async else next(fragments)
            except (StopIteration, StopAsyncIteration):
                return  # an empty iterable sends nothing
            if not isinstance(previous, (str, bytes, bytearray, memoryview)):
                raise TypeError(f"a fragment must be str or bytes, not {type(previous).__name__}")
            started = False
            try:
                while True:
                    try:
                        fragment = await fragments.__anext__() if is_async else next(fragments)
                    except (StopIteration, StopAsyncIteration):
                        break
                    self._send_frame(previous, False)
                    started = True
                    if self._paused_writing:
                        await self._drain()
                    previous = fragment
                self._send_frame(previous, True)
            except BaseException as exc:
                if started and self.core.state is State.OPEN:
                    # Half a message went out: the connection cannot carry on.
                    self.core.fail(1011, "error while sending a fragmented message", exc)
                    self._process()
                raise
        if self._paused_writing:
            await self._drain()

    async def ping(self, data: Optional[Union[str, bytes]] = None) -> Awaitable[float]:
        """Send a ping; return a future that resolves to the round-trip time in seconds."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        if self.core.state is not State.OPEN:
            raise self._closed_exc()
        payload = self.core.ping(data)
        waiter: asyncio.Future[float] = self._loop.create_future()
        pings = self._pings
        if len(pings) >= _MAX_PINGS:
            oldest = next(iter(pings))
            pings.pop(oldest).cancel()
        pings[payload] = waiter
        self._write_out()
        return waiter

    async def pong(self, data: Union[str, bytes] = b"") -> None:
        """Send an unsolicited pong (pings are answered automatically)."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        if self.core.state is not State.OPEN:
            raise self._closed_exc()
        self.core.pong(data)
        self._write_out()

    # -- closing --------------------------------------------------------------------

    def _start_close(self, code: int, reason: str) -> None:
        """Send a close frame if OPEN; keep reading so the peer's answer gets in."""
        core = self.core
        if core.state is State.OPEN:
            core.close(code, reason)
            self._local_close = (code, reason)
            self._close_started = CLOCK()
            self._keep_reading = True
            core.max_pending_messages = None  # the peer's close may sit behind messages
            if self._paused_reading and self._transport is not None and not self._lost:
                self._paused_reading = False
                self._transport.resume_reading()
            self._process()
        elif core.state is State.CONNECTING:
            self.abort()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with ``code`` and ``reason``; return once the connection is closed.

        The peer has ``close_timeout`` seconds to answer before the connection drops.
        """
        check_close_code(code, reason)
        self._start_close(code, reason)
        await self.wait_closed()

    async def wait_closed(self) -> None:
        """Wait until the connection is closed and the socket released."""
        await asyncio.shield(self._lost_waiter)

    def abort(self) -> None:
        """Drop the connection at once, without a closing handshake."""
        if self._transport is not None and not self._lost:
            self._transport.abort()

    # -- properties -----------------------------------------------------------------

    @property
    def remote_address(self) -> Any:
        """The peer's address (``(host, port)`` for TCP)."""
        return None if self._transport is None else self._transport.get_extra_info("peername")

    @property
    def local_address(self) -> Any:
        """This side's address."""
        return None if self._transport is None else self._transport.get_extra_info("sockname")

    @property
    def request(self) -> Optional[Request]:
        """The opening handshake's request."""
        return self.core.request

    @property
    def path(self) -> str:
        """The path of the request (without the query string)."""
        request = self.core.request
        return request.path if request is not None else ""

    @property
    def response(self) -> Optional[Response]:
        """The opening handshake's response."""
        return self.core.response

    @property
    def subprotocol(self) -> Optional[str]:
        """The negotiated subprotocol, if any."""
        return self.core.subprotocol

    @property
    def state(self) -> State:
        """The connection's :class:`wscore.State`."""
        return self.core.state

    @property
    def open(self) -> bool:
        """True while messages can be sent."""
        return self.core.state is State.OPEN

    @property
    def closed(self) -> bool:
        """True once the connection is CLOSED."""
        return self.core.state is State.CLOSED

    @property
    def close_code(self) -> Optional[int]:
        """The close code, once closed."""
        return self.core.close_code

    @property
    def close_reason(self) -> Optional[str]:
        """The close reason, once closed."""
        return self.core.close_reason

    @property
    def latency(self) -> Optional[float]:
        """Round-trip time of the latest answered ping, in seconds (None before any)."""
        return self.core.latency

    @property
    def is_reading(self) -> bool:
        """False while reading is paused because the message queue is full."""
        return not self._paused_reading

    @property
    def write_buffer_size(self) -> int:
        """Bytes waiting in the transport's write buffer."""
        transport = self._transport
        return 0 if transport is None or self._lost else transport.get_write_buffer_size()

    def __repr__(self) -> str:
        side = "client" if self._is_client else "server"
        return f"<{type(self).__name__} {side} {self.state.name} {self.remote_address}>"


def broadcast(
    connections: Iterable[Connection], message: Union[Data, bytearray]
) -> List[Connection]:
    """Send ``message`` to every open connection without waiting on any.

    A connection whose write buffer is above its ``write_limit``, that is in the
    middle of a fragmented message, or that is not OPEN is skipped. Returns the
    skipped connections (also logged at debug level).
    """
    if not isinstance(message, (str, bytes, bytearray, memoryview)):
        raise TypeError(f"broadcast() sends str or bytes, not {type(message).__name__}")
    skipped: List[Connection] = []
    for connection in connections:
        if (
            connection.core.state is not State.OPEN
            or connection._paused_writing
            or connection._send_lock.locked()
            or connection.write_buffer_size > connection._write_limit
        ):
            skipped.append(connection)
            continue
        connection._send_frame(message)
    if skipped:
        logger.debug("broadcast skipped %d connection(s): closed or too slow", len(skipped))
    return skipped
