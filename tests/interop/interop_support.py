"""Helpers for the interop tests: peer processes, client adapters, and the Python case matrix.

Peers run as subprocesses listening on 127.0.0.1 only; each prints a ``listening on ws://...``
line once ready. They are stopped by PID (SIGTERM, then SIGKILL after a timeout) and also exit
by themselves when their stdin (a pipe held by the test process) closes.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
ARTIFACTS = HERE / "artifacts"
MAX_SIZE = 16 * 1024 * 1024  # --max-size given to every server, and max_size of every client
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
OP_TIMEOUT = 20.0
READY_RE = re.compile(r"listening on (wss?)://([^\s:/]+|\[[^\]]+\]):(\d+)")


def node_binary() -> Optional[str]:
    return shutil.which("node") or shutil.which("nodejs")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PeerProcess:
    """A server subprocess started by the tests; stopped by PID only."""

    def __init__(self, name: str, argv: list[str], cwd: Path = ROOT) -> None:
        self.name = name
        self.argv = argv
        self.lines: list[str] = []
        self.url = ""
        self.scheme = "ws"
        self.port = 0
        self._ready = threading.Event()
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(READY_TIMEOUT) or not self.url:
            output = self.output()
            self.stop()
            raise RuntimeError(
                f"{name}: no 'listening on' line within {READY_TIMEOUT}s "
                f"(exit code {self.proc.poll()}); argv={argv}\n{output}"
            )

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if not self.url:
                m = READY_RE.search(line)
                if m:
                    self.port = int(m.group(3))
                    self.scheme = m.group(1)
                    self.url = f"{self.scheme}://127.0.0.1:{self.port}/"
                    self._ready.set()
        self._ready.set()

    def output(self) -> str:
        return "\n".join(self.lines[-200:])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        self._reader.join(2)


def our_server_argv(transport: str, compression: bool, port: int) -> list[str]:
    argv = [sys.executable, "-m", "transports", "serve", "--transport", transport,
            "--host", "127.0.0.1", "--port", str(port), "--max-size", str(MAX_SIZE)]
    if not compression:
        argv.append("--no-compression")
    return argv


def standin_server_argv(compression: bool, port: int) -> list[str]:
    """Same command line as our server, on the websockets library (websockets_peer.py)."""
    argv = [sys.executable, str(HERE / "websockets_peer.py"),
            "--host", "127.0.0.1", "--port", str(port), "--max-size", str(MAX_SIZE)]
    if not compression:
        argv.append("--no-compression")
    return argv


def node_server_argv(compression: bool, port: int) -> list[str]:
    node = node_binary() or "node"
    return [node, str(HERE / "ws_echo_server.js"), str(port), "on" if compression else "off",
            str(MAX_SIZE)]


class ServerRegistry:
    """Starts servers on first use, keeps them for the session, stops them all at the end.

    Kinds: "threaded" and "asyncio" (ours: ``python -m transports serve``, or the stand-in when
    ``standin`` is true), "node_ws" and "websockets" (peers that also obey ``__cmd__`` commands).
    """

    def __init__(self, standin: bool = False) -> None:
        self.standin = standin
        self.servers: dict[tuple[str, bool], PeerProcess] = {}
        self.failures: dict[tuple[str, bool], str] = {}

    def argv(self, kind: str, compression: bool, port: int) -> list[str]:
        if kind in ("threaded", "asyncio"):
            if self.standin:
                return standin_server_argv(compression, port)
            return our_server_argv(kind, compression, port)
        if kind == "node_ws":
            return node_server_argv(compression, port)
        if kind == "websockets":
            return standin_server_argv(compression, port)
        raise ValueError(kind)

    def start(self, kind: str, compression: bool, extra: Sequence[str] = ()) -> PeerProcess:
        """A new server of that kind, not cached: the caller stops it."""
        return PeerProcess(f"{kind} server (compression={'on' if compression else 'off'})",
                           [*self.argv(kind, compression, free_port()), *extra])

    def get(self, kind: str, compression: bool) -> PeerProcess:
        key = (kind, compression)
        if key in self.failures:  # don't wait for a server that failed to start every time
            raise RuntimeError(self.failures[key])
        server = self.servers.get(key)
        if server is None or not server.alive():
            if server is not None:
                server.stop()
                print(f"{server.name} died; restarting it. Its output:\n{server.output()}")
            try:
                server = self.servers[key] = self.start(kind, compression)
            except Exception as exc:
                self.failures[key] = str(exc)
                raise
        return server

    def close_all(self) -> None:
        for server in self.servers.values():
            server.stop()
        self.servers.clear()


# ---------------------------------------------------------------------------------------------
# Client adapters: one synchronous facade over our threaded/asyncio clients and websockets'.


class LoopThread:
    """An event loop in a daemon thread; run() submits a coroutine and waits for its result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Awaitable[Any], timeout: float = OP_TIMEOUT) -> Any:
        async def wrapped() -> Any:
            return await asyncio.wait_for(coro, timeout)

        return asyncio.run_coroutine_threadsafe(wrapped(), self.loop).result(timeout + 5)

    def stop(self) -> None:
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(cancel_all(), self.loop).result(5)
        except Exception:  # noqa: BLE001 - best-effort cleanup
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        if not self.thread.is_alive():
            self.loop.close()


def header_value(headers: Any, name: str) -> str:
    """A header from a websockets Headers, a mapping, or a list of (name, value) pairs."""
    if headers is None:
        return ""
    getter = getattr(headers, "get", None)
    if callable(getter):
        for key in (name, name.lower()):
            try:
                v = getter(key)
            except Exception:  # noqa: BLE001
                v = None
            if v:
                return v.decode() if isinstance(v, bytes) else str(v)
    try:
        items = headers.items() if hasattr(headers, "items") else headers
        for k, v in items:
            k = k.decode() if isinstance(k, bytes) else k
            if k.lower() == name.lower():
                return v.decode() if isinstance(v, bytes) else str(v)
    except Exception:  # noqa: BLE001
        pass
    return ""


class Conn:
    """Synchronous facade of one client connection."""

    def __init__(self, client: Client, ws: Any) -> None:
        self.client = client
        self.ws = ws

    def _call(self, result: Any, timeout: float = OP_TIMEOUT) -> Any:
        if self.client.loop is not None:
            return self.client.loop.run(result, timeout)
        return result

    def send(self, message: Any) -> None:
        self._call(self.ws.send(message))

    def recv(self, timeout: float = OP_TIMEOUT) -> Any:
        if self.client.loop is not None:
            return self.client.loop.run(self.ws.recv(), timeout)
        return self.ws.recv(timeout=timeout)

    def ping(self, data: Any = None, timeout: float = 10.0) -> Optional[bool]:
        """Send a ping. True when the pong arrived, None if the API gives nothing to wait on."""
        if self.client.loop is not None:

            async def go() -> Optional[bool]:
                waiter = await self.ws.ping(data)
                if waiter is None:
                    return None
                if asyncio.isfuture(waiter) or asyncio.iscoroutine(waiter) or hasattr(
                    waiter, "__await__"
                ):
                    await asyncio.wait_for(waiter, timeout)
                    return True
                if hasattr(waiter, "wait"):
                    return bool(await asyncio.to_thread(waiter.wait, timeout))
                return None

            return self.client.loop.run(go(), timeout + 5)
        waiter = self.ws.ping(data)
        if waiter is None:
            return None
        if hasattr(waiter, "wait"):
            return bool(waiter.wait(timeout))
        if hasattr(waiter, "result"):
            waiter.result(timeout)
            return True
        return None

    def close(self, code: Optional[int] = 1000, reason: str = "") -> None:
        if code is None:
            self._call(self.ws.close())
        else:
            self._call(self.ws.close(code, reason))

    @property
    def close_code(self) -> Optional[int]:
        return getattr(self.ws, "close_code", None)

    @property
    def close_reason(self) -> Optional[str]:
        return getattr(self.ws, "close_reason", None)

    def response_header(self, name: str) -> str:
        response = getattr(self.ws, "response", None)
        return header_value(getattr(response, "headers", None), name)


class Client:
    """One client implementation: "threaded" / "asyncio" (ours) or "websockets" (the peer)."""

    def __init__(self, impl: str) -> None:
        self.impl = impl
        self.loop: Optional[LoopThread] = None
        if impl == "threaded":
            import transports.threaded as mod
            import wscore

            self.connect_fn: Callable[..., Any] = mod.connect
            self.closed_exc: type[BaseException] = wscore.ConnectionClosed
            self.closed_ok: type[BaseException] = wscore.ConnectionClosedOK
            self.closed_error: type[BaseException] = wscore.ConnectionClosedError
        elif impl in ("asyncio", "websockets"):
            if impl == "asyncio":
                import transports.asyncio as amod
                import wscore

                self.connect_fn = amod.connect
                self.closed_exc = wscore.ConnectionClosed
                self.closed_ok = wscore.ConnectionClosedOK
                self.closed_error = wscore.ConnectionClosedError
            else:
                import websockets.asyncio.client as wmod
                import websockets.exceptions as wexc

                self.connect_fn = wmod.connect
                self.closed_exc = wexc.ConnectionClosed
                self.closed_ok = wexc.ConnectionClosedOK
                self.closed_error = wexc.ConnectionClosedError
            self.loop = LoopThread()
        else:
            raise ValueError(impl)
        self.open: list[Conn] = []

    def connect(self, url: str, compression: bool) -> Conn:
        kwargs = {"compression": "deflate" if compression else None, "max_size": MAX_SIZE}
        if self.loop is not None:
            connect_fn = self.connect_fn

            async def go() -> Any:
                return await connect_fn(url, **kwargs)

            ws = self.loop.run(go(), 20)
        else:
            ws = self.connect_fn(url, **kwargs)
        conn = Conn(self, ws)
        self.open.append(conn)
        return conn

    def close(self) -> None:
        for conn in self.open:
            try:
                conn.close()
            except BaseException:  # noqa: BLE001 - best-effort cleanup
                pass
        self.open.clear()
        if self.loop is not None:
            self.loop.stop()


# ---------------------------------------------------------------------------------------------
# The Python case matrix, run by our clients (and websockets' client against our servers).


@dataclass
class Ctx:
    client: Client
    url: str
    compression: bool

    def connect(self) -> Conn:
        return self.client.connect(self.url, self.compression)


@dataclass
class Case:
    name: str
    fn: Callable[[Ctx], Any]
    commands: bool = False  # needs a peer that obeys "__cmd__" (node ws, websockets): not ours


CASES: list[Case] = []


CaseFn = Callable[[Ctx], Any]


def case(name: str, commands: bool = False) -> Callable[[CaseFn], CaseFn]:
    def deco(fn: CaseFn) -> CaseFn:
        CASES.append(Case(name, fn, commands))
        return fn

    return deco


SIZES = [0, 1, 125, 126, 127, 65535, 65536, 1 << 20, MAX_SIZE]


def size_name(n: int) -> str:
    return f"{n >> 20}MiB" if n >= 1 << 20 and n % (1 << 20) == 0 else f"{n}B"


def text_of(n: int) -> str:
    unit = "The quick brown fox jumps over the lazy dog 0123456789. "
    return (unit * (n // len(unit) + 1))[:n]


def binary_of(n: int) -> bytes:
    """Random bytes with every 4th zeroed: deflate never grows it past the size limit."""
    data = bytearray(os.urandom(n))
    data[::4] = bytes(len(data[::4]))
    return bytes(data)


def close_normally(conn: Conn) -> None:
    conn.close(1000, "done")
    assert conn.close_code == 1000, f"close_code {conn.close_code}"


def echo(ctx: Ctx, message: Any) -> None:
    conn = ctx.connect()
    conn.send(message)
    got = conn.recv()
    assert type(got) is type(message), f"echo type {type(got).__name__}"
    assert got == message, f"echo differs ({len(got)} vs {len(message)})"
    close_normally(conn)


for _n in SIZES:
    case(f"text_{size_name(_n)}")(lambda ctx, n=_n: echo(ctx, text_of(n)))
    case(f"binary_{size_name(_n)}")(lambda ctx, n=_n: echo(ctx, binary_of(n)))
case("text_unicode")(lambda ctx: echo(ctx, "héllo wörld € 😀 — こんにちは " * 100))
case("binary_compressible_1MiB")(lambda ctx: echo(ctx, b"a" * (1 << 20)))


def fragmented_send(ctx: Ctx, parts: Iterable[Any], whole: Any) -> None:
    conn = ctx.connect()
    conn.send(parts)
    got = conn.recv()
    assert type(got) is type(whole), f"echo type {type(got).__name__}"
    assert got == whole, f"fragmented echo differs ({len(got)} vs {len(whole)})"
    close_normally(conn)


case("fragmented_send_text")(
    lambda ctx: fragmented_send(ctx, ["Hello", ", ", "fragmented", " ", "wörld"],
                                "Hello, fragmented wörld"))


@case("fragmented_send_binary")
def _(ctx: Ctx) -> None:
    whole = binary_of(300000)
    fragmented_send(ctx, [whole[i : i + 65537] for i in range(0, len(whole), 65537)], whole)


@case("fragmented_send_generator")
def _(ctx: Ctx) -> None:
    whole = binary_of(100000)
    fragmented_send(ctx, (whole[i : i + 9999] for i in range(0, len(whole), 9999)), whole)


def pattern(kind: str, size: int) -> Any:
    if kind == "text":
        return ("é" * (size // 2) + ("a" if size % 2 else ""))
    return (bytes(range(251)) * (size // 251 + 1))[:size]


def fragmented_recv(ctx: Ctx, kind: str, n: int, size: int) -> None:
    conn = ctx.connect()
    conn.send(f"__cmd__ frag {kind} {n} {size}")
    got = conn.recv()
    want = pattern(kind, size)
    assert type(got) is type(want), f"type {type(got).__name__}"
    assert got == want, f"reassembled message differs ({len(got)} vs {len(want)})"
    close_normally(conn)


case("fragmented_recv_text_split_utf8", commands=True)(
    lambda ctx: fragmented_recv(ctx, "text", 7, 2000))
case("fragmented_recv_binary", commands=True)(
    lambda ctx: fragmented_recv(ctx, "binary", 5, 300000))
case("fragmented_recv_text_1MiB", commands=True)(
    lambda ctx: fragmented_recv(ctx, "text", 16, 1 << 20))
case("fragmented_recv_empty_fragments", commands=True)(
    lambda ctx: fragmented_recv(ctx, "binary", 4, 1))


def client_ping(ctx: Ctx, payload: Any) -> None:
    conn = ctx.connect()
    got_pong = conn.ping(payload)
    assert got_pong in (True, None), "no pong within 10 s"
    conn.send("after ping")
    assert conn.recv() == "after ping"
    close_normally(conn)


case("ping_client_empty")(lambda ctx: client_ping(ctx, None))
case("ping_client_payload")(lambda ctx: client_ping(ctx, b"interop ping"))
case("ping_client_125B")(lambda ctx: client_ping(ctx, b"p" * 125))


@case("ping_from_server", commands=True)
def _(ctx: Ctx) -> None:
    conn = ctx.connect()
    conn.send("__cmd__ ping hello from the server")
    assert conn.recv() == "pong hello from the server"
    close_normally(conn)


def client_close(ctx: Ctx, code: Optional[int], reason: str) -> None:
    conn = ctx.connect()
    conn.send("x")
    assert conn.recv() == "x"
    conn.close(code, reason)
    want = 1005 if code is None else code
    assert conn.close_code == want, f"close_code {conn.close_code!r}, want {want}"
    if code is not None:
        # RFC 6455 5.5.1: the answering endpoint "typically echos the status code it received";
        # echoing the reason is optional (ws and websockets do, wscore does not).
        assert conn.close_reason in (reason, ""), (
            f"close_reason {conn.close_reason!r}, want {reason!r} or ''"
        )


case("close_client_1000")(lambda ctx: client_close(ctx, 1000, ""))
case("close_client_1000_reason")(lambda ctx: client_close(ctx, 1000, "bye"))
case("close_client_1001_reason")(lambda ctx: client_close(ctx, 1001, "going away"))
case("close_client_3000_reason")(lambda ctx: client_close(ctx, 3000, "app code"))
case("close_client_4999_unicode_reason")(lambda ctx: client_close(ctx, 4999, "adiós €"))
case("close_client_123B_reason")(lambda ctx: client_close(ctx, 4000, "r" * 123))


def server_close(ctx: Ctx, code: int, reason: str) -> None:
    conn = ctx.connect()
    conn.send(f"__cmd__ close {code} {reason}".rstrip())
    t0 = time.monotonic()
    try:
        got = conn.recv(timeout=20)
    except ctx.client.closed_exc as exc:
        ok = code in (1000, 1001)
        want_exc = ctx.client.closed_ok if ok else ctx.client.closed_error
        assert isinstance(exc, want_exc), f"{type(exc).__name__} for close code {code}: {exc}"
    else:
        raise AssertionError(f"recv returned {got!r} instead of raising ConnectionClosed")
    assert time.monotonic() - t0 < 15, "closing took too long"
    assert conn.close_code == code, f"close_code {conn.close_code!r}, want {code}"
    assert conn.close_reason == reason, f"close_reason {conn.close_reason!r}, want {reason!r}"


case("close_server_1000_reason", commands=True)(lambda ctx: server_close(ctx, 1000, "bye"))
case("close_server_1001", commands=True)(lambda ctx: server_close(ctx, 1001, ""))
case("close_server_1011_reason", commands=True)(
    lambda ctx: server_close(ctx, 1011, "internal error"))
case("close_server_4000_unicode_reason", commands=True)(
    lambda ctx: server_close(ctx, 4000, "adiós €"))


@case("too_big_send_1009")
def _(ctx: Ctx) -> None:
    conn = ctx.connect()
    try:
        conn.send(b"\0" * (MAX_SIZE + 1))
        got = conn.recv(timeout=30)
    except ctx.client.closed_exc:
        pass
    else:
        raise AssertionError(f"recv returned {type(got).__name__} instead of raising")
    assert conn.close_code == 1009, f"close_code {conn.close_code!r}, want 1009"


@case("too_big_recv_1009", commands=True)
def _(ctx: Ctx) -> None:
    conn = ctx.connect()
    conn.send(f"__cmd__ frag binary 1 {MAX_SIZE + 1}")
    try:
        got = conn.recv(timeout=30)
    except ctx.client.closed_error:
        pass
    else:
        raise AssertionError(f"recv returned {type(got).__name__} instead of raising")


@case("many_small_messages")
def _(ctx: Ctx) -> None:
    conn = ctx.connect()
    for i in range(500):
        conn.send(f"m{i}")
        if i % 10 == 9:  # stay within the default max_queue on both sides
            for j in range(i - 9, i + 1):
                assert conn.recv() == f"m{j}"
    close_normally(conn)


@case("compression_negotiated_client_view")
def _(ctx: Ctx) -> None:
    conn = ctx.connect()
    ext = conn.response_header("Sec-WebSocket-Extensions")
    if ctx.compression:
        assert "permessage-deflate" in ext, f"Sec-WebSocket-Extensions {ext!r}"
    else:
        assert "permessage-deflate" not in ext, f"Sec-WebSocket-Extensions {ext!r}"
    close_normally(conn)


@case("compression_negotiated_server_view", commands=True)
def _(ctx: Ctx) -> None:
    conn = ctx.connect()
    conn.send("__cmd__ info")
    info = json.loads(conn.recv())
    ext = info["extensions"]
    assert ("permessage-deflate" in ext) == ctx.compression, f"server extensions {ext!r}"
    close_normally(conn)


CASE_BY_NAME = {c.name: c for c in CASES}
assert len(CASE_BY_NAME) == len(CASES), "duplicate case names"


def run_node_client(url: str, compression: bool, timeout: float = 500) -> dict[str, Any]:
    node = node_binary()
    if node is None:
        raise RuntimeError("node is not installed")
    argv = [node, str(HERE / "ws_client.js"), url, "--deflate", "on" if compression else "off",
            "--max-size", str(MAX_SIZE)]
    proc = subprocess.run(argv, cwd=HERE, capture_output=True, text=True, timeout=timeout)
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"ws_client.js failed ({proc.returncode}): {proc.stderr[-2000:]}")
    data = json.loads(proc.stdout)
    return {r["name"]: r for r in data["results"]}


def node_case_names() -> list[str]:
    node = node_binary()
    if node is None:
        return ["node_missing"]
    try:
        out = subprocess.run([node, str(HERE / "ws_client.js"), "--list"], cwd=HERE,
                             capture_output=True, text=True, timeout=30)
        return list(json.loads(out.stdout))
    except Exception:  # noqa: BLE001 - reported by the test instead
        return ["node_client_unavailable"]


def self_signed_cert(directory: Path) -> Optional[tuple[Path, Path]]:
    """A self-signed certificate for 127.0.0.1 made with the openssl command, or None."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key
