"""The threaded server's worker threads: reused between connections, bounded, retired."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

import pytest
from threaded_support import wait_until

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
