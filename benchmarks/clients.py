"""Load generators and clients under test; each run is its own process.

    python -m benchmarks.clients --client NAME --port P [--server-pid PID] [--cpu 1] \
        --workloads '[{"kind": "echo", "size": 16, "duration": 1.0}, ...]'

Prints one JSON line per workload:
    {"name":..., "msgs": n, "elapsed": s, "server_cpu": s, "client_cpu": s, ...}

Workload kinds:
  echo       one connection, one message in flight (round trips)
  stream     one connection, ``window`` messages in flight
  many       ``conns`` connections, one message in flight each
  handshake  open + close (``concurrency`` workers, each sequential)
  hold       (memory) warm up, print WARM, wait for a stdin line, open ``conns``
             connections with one echo each, print READY, wait for a stdin line, exit

Every loop stops at its deadline or after ``max_msgs``; draining is bounded by a timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time

from .common import (
    HOST,
    MAX_SIZE,
    UPGRADE_REQUEST,
    now,
    payload,
    pin,
    proc_cpu,
    raise_nofile,
    self_cpu,
)

DRAIN_TIMEOUT = 10.0
MAX_MSGS = 50_000_000


class Stats:
    """Counters of one measurement; ``mark_stop`` snapshots counters and CPU times at the
    deadline, so that draining the messages still in flight is not measured."""

    __slots__ = (
        "running",
        "received",
        "sent",
        "t_stop",
        "received_at_stop",
        "server_pid",
        "srv_cpu0",
        "cli_cpu0",
        "srv_cpu",
        "cli_cpu",
        "stopped",
    )

    def __init__(self, server_pid: int = 0) -> None:
        self.running = True
        self.stopped = False
        self.received = 0
        self.sent = 0
        self.t_stop = 0.0
        self.received_at_stop = 0
        self.server_pid = server_pid
        self.srv_cpu0 = proc_cpu(server_pid) if server_pid else 0.0
        self.cli_cpu0 = self_cpu()
        self.srv_cpu = self.cli_cpu = 0.0

    def mark_stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self.running = False
        self.t_stop = now()
        self.received_at_stop = self.received
        self.srv_cpu = (proc_cpu(self.server_pid) if self.server_pid else 0.0) - self.srv_cpu0
        self.cli_cpu = self_cpu() - self.cli_cpu0


# =========================================================================== picows (native)


def _picows_mod():
    import picows

    return picows


class PicowsDriver:
    """picows used the way it is meant to be: callbacks, no queues. Also the fixed
    load generator for measuring servers (with uvloop)."""

    name = "picows"
    is_async = True

    def __init__(self) -> None:
        pw = _picows_mod()
        self.pw = pw
        BIN, CONT, CLOSE, PING = (
            pw.WSMsgType.BINARY,
            pw.WSMsgType.CONTINUATION,
            pw.WSMsgType.CLOSE,
            pw.WSMsgType.PING,
        )

        class Conn(pw.WSListener):
            def __init__(self) -> None:
                self.st: Stats | None = None
                self.data = b""
                self.sent = 0
                self.recv = 0
                self.done: asyncio.Future | None = None
                self.echo_waiter: asyncio.Future | None = None

            def on_ws_frame(self, transport, frame):
                t = frame.msg_type
                if t is BIN or t is CONT:
                    if not frame.fin:
                        return
                    self.recv += 1
                    w = self.echo_waiter
                    if w is not None:
                        self.echo_waiter = None
                        if not w.done():
                            w.set_result(None)
                        return
                    st = self.st
                    if st is None:
                        return
                    st.received += 1
                    if st.running:
                        transport.send(BIN, self.data)
                        self.sent += 1
                    elif self.recv >= self.sent and self.done is not None and not self.done.done():
                        self.done.set_result(None)
                elif t is PING:
                    transport.send_pong(frame.get_payload_as_bytes())
                elif t is CLOSE:
                    if not transport.is_close_frame_sent:
                        transport.send_close(frame.get_close_code())
                    transport.disconnect()

        self.Conn = Conn

    async def open(self, url):
        transport, listener = await self.pw.ws_connect(
            self.Conn,
            url,
            max_frame_size=MAX_SIZE,
            enable_auto_ping=False,
            websocket_handshake_timeout=30,
        )
        listener.transport = transport
        return listener

    async def close(self, conn):
        t = conn.transport
        try:
            t.send_close(self.pw.WSCloseCode.OK)
            await asyncio.wait_for(t.wait_disconnected(), 5)
        except Exception:
            t.disconnect(False)

    async def echo_once(self, conn, data):
        conn.echo_waiter = asyncio.get_running_loop().create_future()
        conn.transport.send(self.pw.WSMsgType.BINARY, data)
        await asyncio.wait_for(conn.echo_waiter, 30)

    async def run_flow(self, conns, data, window, duration, st: Stats):
        """Every connection keeps ``window`` messages in flight until the deadline."""
        loop = asyncio.get_running_loop()
        BIN = self.pw.WSMsgType.BINARY
        for c in conns:
            c.st, c.data, c.sent, c.recv = st, data, 0, 0
            c.done = loop.create_future()
        t0 = now()

        def stop():
            st.mark_stop()
            for c in conns:
                if c.recv >= c.sent and not c.done.done():
                    c.done.set_result(None)

        handle = loop.call_later(duration, stop)
        for c in conns:
            for _ in range(window):
                c.transport.send(BIN, data)
                c.sent += 1
        try:
            await asyncio.wait_for(
                asyncio.gather(*(c.done for c in conns)), duration + DRAIN_TIMEOUT
            )
        finally:
            handle.cancel()
            for c in conns:
                c.st = None
        return st.received_at_stop, st.t_stop - t0


# =========================================================================== generic async


class AsyncDriver:
    """send/recv/close coroutines around a library's connection object."""

    is_async = True

    async def run_flow(self, conns, data, window, duration, st: Stats):
        t0 = now()
        deadline = t0 + duration

        async def one(c):
            if window == 1:
                n = 0
                while n < MAX_MSGS:
                    await self.send(c, data)
                    await self.recv(c)
                    n += 1
                    st.received += 1
                    if now() >= deadline:
                        break
                st.mark_stop()
                return
            sem = asyncio.Semaphore(window)
            sent = 0
            stop = asyncio.Event()

            async def sender():
                nonlocal sent
                while not stop.is_set() and sent < MAX_MSGS:
                    await sem.acquire()
                    if stop.is_set():
                        break
                    await self.send(c, data)
                    sent += 1

            task = asyncio.ensure_future(sender())
            got = 0
            try:
                while True:
                    if stop.is_set() and got >= sent:
                        break
                    await self.recv(c)
                    got += 1
                    sem.release()
                    if not stop.is_set():
                        st.received += 1
                        if now() >= deadline:
                            st.mark_stop()
                            stop.set()
                            sem.release()
            finally:
                stop.set()
                sem.release()
                await task

        await asyncio.wait_for(asyncio.gather(*(one(c) for c in conns)), duration + DRAIN_TIMEOUT)
        st.mark_stop()
        return st.received_at_stop, st.t_stop - t0


class WebsocketsAsyncDriver(AsyncDriver):
    name = "websockets"

    def __init__(self) -> None:
        from websockets.asyncio.client import connect

        self.connect = connect

    async def open(self, url):
        return await self.connect(
            url, compression=None, ping_interval=None, max_size=MAX_SIZE, proxy=None
        )

    async def send(self, c, data):
        await c.send(data)

    async def recv(self, c):
        return await c.recv()

    async def close(self, c):
        await c.close()


class AiohttpDriver(AsyncDriver):
    name = "aiohttp"

    def __init__(self) -> None:
        import aiohttp

        self.aiohttp = aiohttp
        self.session = None

    async def open(self, url):
        if self.session is None:
            self.session = self.aiohttp.ClientSession(connector=self.aiohttp.TCPConnector(limit=0))
        return await self.session.ws_connect(
            url, autoping=True, heartbeat=None, compress=0, max_msg_size=MAX_SIZE
        )

    async def send(self, c, data):
        await c.send_bytes(data)

    async def recv(self, c):
        msg = await c.receive()
        if msg.type != self.aiohttp.WSMsgType.BINARY:
            raise ConnectionError(f"unexpected {msg.type}")
        return msg.data

    async def close(self, c):
        await c.close()


class OursAsyncDriver(AsyncDriver):
    name = "ours-asyncio"

    def __init__(self) -> None:
        from transports.asyncio import connect

        self.connect = connect

    async def open(self, url):
        return await self.connect(url, compression=None, ping_interval=None, max_size=MAX_SIZE)

    async def send(self, c, data):
        await c.send(data)

    async def recv(self, c):
        return await c.recv()

    async def close(self, c):
        await c.close()


# =========================================================================== raw TCP (asyncio)


class RawDriver:
    """The ceiling: fixed-size messages over plain TCP, no framing; a message is
    complete when ``size`` bytes have come back."""

    name = "raw"
    is_async = True

    def __init__(self) -> None:
        import socket

        class Conn(asyncio.Protocol):
            def __init__(self) -> None:
                self.st: Stats | None = None
                self.size = 1
                self.data = b"x"
                self.buf = 0
                self.sent = 0
                self.recv = 0
                self.done: asyncio.Future | None = None
                self.echo_waiter: asyncio.Future | None = None
                self.closed: asyncio.Future = asyncio.get_running_loop().create_future()

            def connection_made(self, transport):
                self.transport = transport
                transport.get_extra_info("socket").setsockopt(
                    socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
                )

            def connection_lost(self, exc):
                if not self.closed.done():
                    self.closed.set_result(None)

            def data_received(self, data):
                self.buf += len(data)
                size = self.size
                while self.buf >= size:
                    self.buf -= size
                    self.recv += 1
                    w = self.echo_waiter
                    if w is not None:
                        self.echo_waiter = None
                        if not w.done():
                            w.set_result(None)
                        continue
                    st = self.st
                    if st is None:
                        continue
                    st.received += 1
                    if st.running:
                        self.transport.write(self.data)
                        self.sent += 1
                    elif self.recv >= self.sent and self.done is not None and not self.done.done():
                        self.done.set_result(None)

        self.Conn = Conn

    async def open(self, url):
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(self.Conn, HOST, port)
        return conn

    async def close(self, conn):
        conn.transport.close()
        await asyncio.wait_for(conn.closed, 5)

    async def echo_once(self, conn, data):
        conn.size, conn.buf = len(data), 0
        conn.echo_waiter = asyncio.get_running_loop().create_future()
        conn.transport.write(data)
        await asyncio.wait_for(conn.echo_waiter, 30)

    async def run_flow(self, conns, data, window, duration, st: Stats):
        loop = asyncio.get_running_loop()
        for c in conns:
            c.st, c.data, c.size, c.buf, c.sent, c.recv = st, data, len(data), 0, 0, 0
            c.done = loop.create_future()
        t0 = now()

        def stop():
            st.mark_stop()
            for c in conns:
                if c.recv >= c.sent and not c.done.done():
                    c.done.set_result(None)

        handle = loop.call_later(duration, stop)
        for c in conns:
            c.transport.write(data * window)
            c.sent += window
        try:
            await asyncio.wait_for(
                asyncio.gather(*(c.done for c in conns)), duration + DRAIN_TIMEOUT
            )
        finally:
            handle.cancel()
            for c in conns:
                c.st = None
        return st.received_at_stop, st.t_stop - t0


# =========================================================================== lean handshake client


class HandshakeDriver:
    """A minimal WebSocket handshake load generator (handshake workloads only): a
    precomputed upgrade request on a raw asyncio Protocol, check for ``101``, send a
    masked close frame, wait for the server to close TCP. Much cheaper than a full
    client library, so handshake rates measure the server rather than the client."""

    name = "handshake"
    is_async = True

    REQUEST = UPGRADE_REQUEST
    # FIN+close, masked, 2-byte payload 1000, mask 0
    CLOSE = bytes([0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE8])

    def __init__(self) -> None:
        driver = self

        class Conn(asyncio.Protocol):
            def __init__(self) -> None:
                loop = asyncio.get_running_loop()
                self.opened = loop.create_future()
                self.closed = loop.create_future()
                self.head = b""
                self.upgraded = False

            def connection_made(self, transport):
                self.transport = transport
                transport.write(driver.request)

            def data_received(self, data):
                if self.upgraded:
                    return
                self.head += data
                if b"\r\n\r\n" in self.head:
                    self.upgraded = True
                    if self.head.startswith(b"HTTP/1.1 101"):
                        self.opened.set_result(None)
                    else:
                        self.opened.set_exception(ConnectionError(self.head[:40]))

            def connection_lost(self, exc):
                if not self.opened.done():
                    self.opened.set_exception(ConnectionError("closed during handshake"))
                if not self.closed.done():
                    self.closed.set_result(None)

        self.Conn = Conn

    async def open(self, url):
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        self.request = self.REQUEST.format(port=port).encode()
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(self.Conn, HOST, port)
        await asyncio.wait_for(conn.opened, 10)
        return conn

    async def close(self, conn):
        conn.transport.write(self.CLOSE)
        try:
            await asyncio.wait_for(conn.closed, 5)
        except asyncio.TimeoutError:
            conn.transport.abort()


# =========================================================================== sync (threads)


class SyncDriver:
    is_async = False

    def run_flow(self, conns, data, window, duration, st: Stats):
        assert len(conns) == 1, "sync clients run single-connection workloads"
        c = conns[0]
        t0 = now()
        deadline = t0 + duration
        if window == 1:
            n = 0
            while n < MAX_MSGS:
                self.send(c, data)
                self.recv(c)
                n += 1
                if now() >= deadline:
                    break
            st.received = n
            st.mark_stop()
            return n, st.t_stop - t0
        sem = threading.Semaphore(window)
        stop = threading.Event()
        sent = [0]
        errors: list[BaseException] = []

        def sender():
            try:
                while not stop.is_set() and sent[0] < MAX_MSGS:
                    if not sem.acquire(timeout=1.0):
                        continue
                    if stop.is_set():
                        break
                    self.send(c, data)
                    sent[0] += 1
            except BaseException as exc:  # pragma: no cover
                errors.append(exc)
                stop.set()

        th = threading.Thread(target=sender, daemon=True)
        th.start()
        got = counted = 0
        drain_deadline = None
        while True:
            if stop.is_set():
                th.join(timeout=DRAIN_TIMEOUT)
                if got >= sent[0] or errors:
                    break
                if drain_deadline is None:
                    drain_deadline = now() + DRAIN_TIMEOUT
                elif now() > drain_deadline:
                    raise TimeoutError("drain")
            self.recv(c)
            got += 1
            sem.release()
            if not stop.is_set():
                counted += 1
                if now() >= deadline:
                    st.received = counted
                    st.mark_stop()
                    stop.set()
                    sem.release()
        if errors:
            raise errors[0]
        st.received = counted
        st.mark_stop()
        return counted, st.t_stop - t0


class WebsocketsSyncDriver(SyncDriver):
    name = "websockets-sync"

    def __init__(self) -> None:
        import inspect

        from websockets.sync.client import connect

        self.connect = connect
        # websockets >= 16 wants ``legacy=True`` to return the connection directly
        self.extra = {"legacy": True} if "legacy" in inspect.signature(connect).parameters else {}

    def open(self, url):
        return self.connect(
            url,
            compression=None,
            ping_interval=None,
            max_size=MAX_SIZE,
            proxy=None,
            **self.extra,
        )

    def send(self, c, data):
        c.send(data)

    def recv(self, c):
        return c.recv(timeout=DRAIN_TIMEOUT)

    def close(self, c):
        c.close()


class SimpleWebsocketDriver(SyncDriver):
    name = "simple-websocket"

    def __init__(self) -> None:
        import simple_websocket

        self.sw = simple_websocket

    def open(self, url):
        return self.sw.Client.connect(url, max_message_size=None, receive_bytes=65536)

    def send(self, c, data):
        c.send(data)

    def recv(self, c):
        msg = c.receive(timeout=DRAIN_TIMEOUT)
        if msg is None:
            raise TimeoutError("recv")
        return msg

    def close(self, c):
        c.close()


class OursThreadedDriver(SyncDriver):
    name = "ours-threaded"

    def __init__(self) -> None:
        from transports.threaded import connect

        self.connect = connect

    def open(self, url):
        return self.connect(url, compression=None, ping_interval=None, max_size=MAX_SIZE)

    def send(self, c, data):
        c.send(data)

    def recv(self, c):
        return c.recv(timeout=DRAIN_TIMEOUT)

    def close(self, c):
        c.close()


# =========================================================================== runner

CLIENTS = {
    # name: (driver factory, use uvloop)
    "picows-uvloop": (PicowsDriver, True),
    "picows": (PicowsDriver, False),
    "websockets": (WebsocketsAsyncDriver, False),
    "websockets-uvloop": (WebsocketsAsyncDriver, True),
    "websockets-sync": (WebsocketsSyncDriver, False),
    "aiohttp": (AiohttpDriver, False),
    "simple-websocket": (SimpleWebsocketDriver, False),
    "ours-threaded": (OursThreadedDriver, False),
    "ours-asyncio": (OursAsyncDriver, False),
    "ours-asyncio-uvloop": (OursAsyncDriver, True),
    "raw-uvloop": (RawDriver, True),
    "handshake-uvloop": (HandshakeDriver, True),
    "raw": (RawDriver, False),
}


async def _gather_limited(coros_factory, n, limit):
    sem = asyncio.Semaphore(limit)

    async def one(i):
        async with sem:
            return await coros_factory(i)

    return await asyncio.gather(*(one(i) for i in range(n)))


def _flow_result(msgs: int, elapsed: float, st: Stats, w: dict) -> dict:
    """What an echo/stream/many workload reports."""
    return {
        "msgs": msgs,
        "elapsed": elapsed,
        "server_cpu": st.srv_cpu,
        "client_cpu": st.cli_cpu,
        "bytes": msgs * int(w["size"]),
    }


async def _echo_each(drv, conns, data) -> None:
    """One round trip of ``data`` on every connection."""
    if hasattr(drv, "echo_once"):
        await asyncio.gather(*(drv.echo_once(c, data) for c in conns))
    else:
        for c in conns:
            await drv.send(c, data)
            await drv.recv(c)


async def async_workload(drv, url, w, server_pid):
    kind = w["kind"]
    duration = float(w.get("duration", 1.0))
    st = Stats()
    if kind == "warm":
        # One large message each way, not measured: see WARM in scenarios.py.
        c = await drv.open(url)
        try:
            await _echo_each(drv, [c], payload(int(w["size"])))
        finally:
            await asyncio.wait_for(drv.close(c), 30)
        return {"msgs": 1, "elapsed": 0.0, "server_cpu": 0.0, "client_cpu": 0.0}
    if kind in ("echo", "stream", "many"):
        nconn = int(w.get("conns", 1))
        window = int(w.get("window", 1))
        data = payload(int(w["size"]))
        conns = await _gather_limited(lambda i: drv.open(url), nconn, 50)
        try:
            await _echo_each(drv, conns, data)  # a warm-up round trip each, not measured
            st = Stats(server_pid)
            msgs, elapsed = await drv.run_flow(conns, data, window, duration, st)
        finally:
            await asyncio.wait_for(
                asyncio.gather(*(drv.close(c) for c in conns), return_exceptions=True), 30
            )
        return _flow_result(msgs, elapsed, st, w)
    if kind == "handshake":
        conc = int(w.get("concurrency", 1))
        t0 = now()
        deadline = t0 + duration
        s0, c0 = proc_cpu(server_pid) if server_pid else 0.0, self_cpu()
        count = 0

        async def worker():
            nonlocal count
            while now() < deadline and count < MAX_MSGS:
                c = await drv.open(url)
                if isinstance(drv, RawDriver):
                    await drv.echo_once(c, b"x")
                await drv.close(c)
                count += 1

        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(conc))), duration + 30)
        elapsed = now() - t0
        s1, c1 = proc_cpu(server_pid) if server_pid else 0.0, self_cpu()
        return {"msgs": count, "elapsed": elapsed, "server_cpu": s1 - s0, "client_cpu": c1 - c0}
    if kind == "hold":
        nconn = int(w["conns"])
        data = payload(16)
        loop = asyncio.get_running_loop()
        readline = lambda: loop.run_in_executor(None, sys.stdin.readline)  # noqa: E731
        warm = await _gather_limited(lambda i: drv.open(url), 20, 20)
        for c in warm:
            await drv.echo_once(c, data)
        await asyncio.gather(*(drv.close(c) for c in warm), return_exceptions=True)
        print("WARM", flush=True)
        await readline()
        t0 = now()

        async def open_one(i):
            c = await drv.open(url)
            await drv.echo_once(c, data)
            return c

        budget = float(w.get("open_budget", 60.0))

        async def try_open(i):
            if now() - t0 > budget:
                return TimeoutError(f"open budget of {budget:.0f} s used up")
            try:
                return await asyncio.wait_for(open_one(i), 40)
            except Exception as exc:
                return exc

        res = await _gather_limited(try_open, nconn, 100)
        conns = [c for c in res if not isinstance(c, Exception)]
        errs = sorted({f"{type(e).__name__}: {e}"[:80] for e in res if isinstance(e, Exception)})
        print(
            f"READY {len(conns)} {now() - t0:.3f} {nconn - len(conns)} {'; '.join(errs)[:200]}",
            flush=True,
        )
        await readline()
        return {"msgs": len(conns), "elapsed": now() - t0, "server_cpu": 0.0, "client_cpu": 0.0}
    raise ValueError(kind)


def sync_workload(drv, url, w, server_pid):
    kind = w["kind"]
    duration = float(w.get("duration", 1.0))
    if kind == "warm":
        c = drv.open(url)
        try:
            drv.send(c, payload(int(w["size"])))
            drv.recv(c)
        finally:
            drv.close(c)
        return {"msgs": 1, "elapsed": 0.0, "server_cpu": 0.0, "client_cpu": 0.0}
    if kind in ("echo", "stream"):
        window = int(w.get("window", 1))
        data = payload(int(w["size"]))
        c = drv.open(url)
        try:
            drv.send(c, data)
            drv.recv(c)
            st = Stats(server_pid)
            msgs, elapsed = drv.run_flow([c], data, window, duration, st)
        finally:
            try:
                drv.close(c)
            except Exception:
                pass
        return _flow_result(msgs, elapsed, st, w)
    if kind == "handshake":
        conc = int(w.get("concurrency", 1))
        t0 = now()
        deadline = t0 + duration
        s0, c0 = proc_cpu(server_pid) if server_pid else 0.0, self_cpu()
        counts = [0] * conc

        def worker(i):
            while now() < deadline and counts[i] < MAX_MSGS:
                c = drv.open(url)
                drv.close(c)
                counts[i] += 1

        if conc == 1:
            worker(0)
        else:
            ths = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(conc)]
            for th in ths:
                th.start()
            for th in ths:
                th.join(duration + 30)
        elapsed = now() - t0
        s1, c1 = proc_cpu(server_pid) if server_pid else 0.0, self_cpu()
        return {
            "msgs": sum(counts),
            "elapsed": elapsed,
            "server_cpu": s1 - s0,
            "client_cpu": c1 - c0,
        }
    raise ValueError(f"{kind} is not supported by sync clients")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--client", required=True, choices=sorted(CLIENTS))
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--server-pid", type=int, default=0)
    ap.add_argument("--cpu", default=None)
    ap.add_argument("--workloads", required=True, help="JSON list of workload dicts")
    args = ap.parse_args()
    pin(args.cpu)
    raise_nofile()
    factory, uv = CLIENTS[args.client]
    drv = factory()
    url = f"ws://{HOST}:{args.port}/"
    workloads = json.loads(args.workloads)

    def emit(w, res=None, err=None):
        out = {"name": w.get("name", w["kind"]), **w}
        if res:
            out.update(res)
        if err:
            out["error"] = err
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()

    if drv.is_async:
        if uv:
            import uvloop

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())

        async def amain():
            for w in workloads:
                try:
                    res = await async_workload(drv, url, w, args.server_pid)
                    emit(w, res)
                except Exception as exc:
                    emit(w, err=f"{type(exc).__name__}: {exc}"[:300])
                await asyncio.sleep(0.05)
            sess = getattr(drv, "session", None)
            if sess is not None:
                await sess.close()

        asyncio.run(amain())
    else:
        for w in workloads:
            try:
                emit(w, sync_workload(drv, url, w, args.server_pid))
            except Exception as exc:
                emit(w, err=f"{type(exc).__name__}: {exc}"[:300])
            time.sleep(0.05)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
