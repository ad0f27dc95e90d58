"""The threaded server's worker threads: reused between connections, bounded, retired."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, List

import pytest
from frames_support import UPGRADE_REQUEST
from threaded_support import HOST, echo, wait_until

from transports.threaded import Server
from transports.threaded import server as server_module

Start = Callable[..., Server]



def ident_handler(seen: list) -> Callable[[Any], None]:
    def handler(ws: Any) -> None:
        seen.append(threading.get_ident())
        ws.send(ws.recv())

    return handler


def test_worker_thread_serves_the_next_connection(start_server: Start, client: Any) -> None:
    seen: list = []
    server = start_server(ident_handler(seen))
    for i in range(3):
        ws = client(server)
        ws.send(f"m{i}")
        assert ws.recv(timeout=5) == f"m{i}"
        ws.close()
        assert wait_until(lambda: server._active == 0 and len(server._idle) == 1)
    assert len(set(seen)) == 1  # one thread served all three, one after the other
    assert len(server._threads) == 1


def test_concurrent_connections_get_their_own_threads(start_server: Start, client: Any) -> None:
    seen: list = []
    server = start_server(ident_handler(seen))
    conns = [client(server) for _ in range(5)]
    for ws in conns:
        ws.send("x")
        assert ws.recv(timeout=5) == "x"
    assert len(set(seen)) == 5
    for ws in conns:
        ws.close()
    assert wait_until(lambda: len(server._idle) == 5)


def test_idle_workers_are_bounded_and_retire(
    start_server: Start, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_module, "_MAX_IDLE", 2)
    monkeypatch.setattr(server_module, "_IDLE_TIMEOUT", 0.3)
    server = start_server(ident_handler([]))
    conns = [client(server) for _ in range(4)]
    for ws in conns:
        ws.send("x")
        assert ws.recv(timeout=5) == "x"
        ws.close()
    # Beyond _MAX_IDLE the threads exit at once; the idle ones after _IDLE_TIMEOUT.
    assert wait_until(lambda: server._active == 0)
    assert len(server._idle) <= 2
    assert wait_until(lambda: not server._threads and not server._idle)
    ws = client(server)  # and a new thread comes when needed
    ws.send("again")
    assert ws.recv(timeout=5) == "again"


def test_shutdown_releases_idle_workers(start_server: Start, client: Any) -> None:
    server = start_server(ident_handler([]))
    ws = client(server)
    ws.send("x")
    assert ws.recv(timeout=5) == "x"
    ws.close()
    assert wait_until(lambda: len(server._idle) == 1)
    threads = set(server._threads)
    started = time.monotonic()
    server.shutdown(timeout=5)
    assert time.monotonic() - started < 2
    assert all(not t.is_alive() for t in threads)


def slow_clients(
    server: Server, n: int, start: bytes = UPGRADE_REQUEST[:30]
) -> List[socket.socket]:
    """``n`` TCP connections that send the ``start`` of their request, then nothing."""
    socks = [socket.create_connection((HOST, server.port), timeout=5) for _ in range(n)]
    for sock in socks:
        sock.sendall(start)
    assert wait_until(lambda: len(server._openings) == n)
    return socks


def test_clients_take_a_thread_only_once_their_request_is_in(
    start_server: Start, client: Any
) -> None:
    # The I/O thread reads requests: silent or slow clients hold no thread and no
    # max_connections slot, so they cannot lock out the others (slowloris).
    server = start_server(echo, max_connections=2)
    # Silent ones (Linux: TCP_DEFER_ACCEPT keeps them in the kernel) and slow ones.
    silent = [socket.create_connection((HOST, server.port), timeout=5) for _ in range(5)]
    silent += slow_clients(server, 20)
    try:
        assert not server._threads and server._active == 0
        ws = client(server)
        ws.send("x")
        assert ws.recv(timeout=5) == "x"
        assert len(server._threads) == 1
        # A request sent a byte at a time is read as it comes.
        with socket.create_connection((HOST, server.port), timeout=5) as slow:
            for i in range(len(UPGRADE_REQUEST)):
                slow.send(UPGRADE_REQUEST[i : i + 1])
                if i % 40 == 0:
                    time.sleep(0.01)
            assert slow.recv(4096).startswith(b"HTTP/1.1 101 ")
            assert wait_until(lambda: server._active == 2)
            # max_connections counts connections with a thread, not the silent ones.
            with pytest.raises(Exception) as info:
                client(server)
            assert getattr(info.value, "status", None) == 503
    finally:
        for sock in silent:
            sock.close()
    assert wait_until(lambda: not server._openings)


@pytest.mark.skipif(not hasattr(socket, "TCP_DEFER_ACCEPT"), reason="Linux only")
def test_a_client_is_accepted_once_it_sends(start_server: Start) -> None:
    # TCP_DEFER_ACCEPT: a client that sends nothing stays in the kernel.
    server = start_server(echo)
    with socket.create_connection((HOST, server.port), timeout=5) as sock:
        time.sleep(0.3)
        assert not server._openings and not server._threads
        sock.sendall(UPGRADE_REQUEST[:20])
        assert wait_until(lambda: len(server._openings) == 1)
        sock.sendall(UPGRADE_REQUEST[20:])
        assert sock.recv(4096).startswith(b"HTTP/1.1 101 ")


def test_silent_clients_time_out_and_close_at_shutdown(start_server: Start) -> None:
    server = start_server(ident_handler([]), open_timeout=0.5)
    first = slow_clients(server, 3)
    started = time.monotonic()
    for sock in first:
        assert sock.recv(100) == b""  # closed at open_timeout, no answer
    assert 0.3 < time.monotonic() - started < 3
    assert wait_until(lambda: not server._openings)
    server = start_server(ident_handler([]))  # open_timeout 10 s: shutdown closes them
    second = slow_clients(server, 3)
    started = time.monotonic()
    server.shutdown(timeout=3)
    for sock in second:
        assert sock.recv(100) == b""
        sock.close()
    assert time.monotonic() - started < 2


def test_silent_tls_clients_hold_no_thread(
    start_server: Start, client: Any, tls_contexts: tuple
) -> None:
    server_ctx, client_ctx = tls_contexts
    server = start_server(ident_handler([]), ssl=server_ctx, max_connections=1)
    silent = slow_clients(server, 5, b"\x16\x03\x01")  # a TLS record begun, no more
    try:
        ws = client(f"wss://localhost:{server.port}/", ssl=client_ctx)
        ws.send("x")
        assert ws.recv(timeout=5) == "x"
        assert len(server._threads) == 1
    finally:
        for sock in silent:
            sock.close()
    assert wait_until(lambda: len(server._openings) == 0)


FD_LIMITED_SERVER = """
import resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (48, 48))
from transports.threaded import serve
def echo(ws):
    for message in ws:
        ws.send(message)
server = serve(echo, "127.0.0.1", 0)
print(server.port, flush=True)
server.serve_forever()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_out_of_file_descriptors_pauses_accepting(tmp_path: Any) -> None:
    # accept() failing with EMFILE fails again at once: the I/O thread spun at 100%
    # CPU until a descriptor was free. The listener now rests _ACCEPT_RETRY instead.
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-c", FD_LIMITED_SERVER],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    socks: List[socket.socket] = []
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        for _ in range(60):  # beyond the 48 descriptors the server may hold
            sock = socket.create_connection((HOST, port), timeout=5)
            sock.sendall(UPGRADE_REQUEST)
            socks.append(sock)
        time.sleep(0.5)

        def cpu_seconds() -> float:
            with open(f"/proc/{proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

        before = cpu_seconds()
        time.sleep(1.0)
        assert cpu_seconds() - before < 0.3  # spinning: about 1.0
        for sock in socks[:30]:  # room again: the others are served
            sock.close()
        for sock in socks[30:]:
            assert sock.recv(100).startswith(b"HTTP/1.1 101 ")
    finally:
        for sock in socks:
            sock.close()
        proc.terminate()
        proc.wait(10)
