"""A reader idle in recv() hands its socket to the I/O thread, over real sockets."""

from __future__ import annotations

import socket
import struct
import threading
import time
from typing import Any, Callable, List

import pytest
from threaded_support import wait_until

from transports.threaded import Server
from transports.threaded import connection as connection_module

Start = Callable[..., Server]


@pytest.fixture(autouse=True, params=["gate", "socket"])
def quick_parking(request: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test here runs with both kinds of blocking wait: the compiled gate
    (``transports._gate``, Linux) and plain ``socket.recv`` and ``select.poll``."""
    monkeypatch.setattr(connection_module, "_PARK_AFTER", 0.1)
    if request.param == "socket":
        monkeypatch.setattr(connection_module, "_gated_recv", None)
        monkeypatch.setattr(connection_module, "_gated_poll", None)
    elif connection_module._gated_recv is None:
        pytest.skip("transports._gate is not built here")


def parked_server(start_server: Start) -> tuple:
    conns: List[Any] = []
    got: List[Any] = []

    def handler(ws: Any) -> None:
        conns.append(ws)
        for message in ws:
            got.append(message)
            ws.send(message)

    return start_server(handler), conns, got


def test_idle_reader_parks_and_wakes_for_a_message(start_server: Start, client: Any) -> None:
    server, conns, got = parked_server(start_server)
    ws = client(server)
    ws.send("first")
    assert ws.recv(timeout=5) == "first"
    assert wait_until(lambda: conns and conns[0]._parked is not None)
    # Parked: the I/O thread reads; pings are answered without the handler's thread.
    assert ws.ping(b"while parked").wait(5) < 5
    assert conns[0]._parked is not None
    ws.send("second")  # wakes the handler, which takes its socket back
    assert ws.recv(timeout=5) == "second"
    assert got == ["first", "second"]


def test_parked_reader_sees_the_close(start_server: Start, client: Any) -> None:
    server, conns, got = parked_server(start_server)
    ws = client(server)
    ws.send("x")
    assert ws.recv(timeout=5) == "x"
    assert wait_until(lambda: conns and conns[0]._parked is not None)
    ws.close(1001, "going away")
    assert wait_until(lambda: conns[0].close_code == 1001)
    assert wait_until(lambda: not server._active)  # the handler's loop ended


def test_parked_recv_timeout(client: Any, start_server: Start) -> None:
    outcome: List[Any] = []

    def handler(ws: Any) -> None:
        started = time.monotonic()
        try:
            ws.recv(timeout=0.5)
        except TimeoutError:
            outcome.append(("timeout", time.monotonic() - started, ws._reader))
        outcome.append(ws.recv(timeout=5))  # still works after a timeout while parked
        ws.send("done")

    server = start_server(handler)
    ws = client(server)
    assert wait_until(lambda: len(outcome) == 1)
    kind, elapsed, _ = outcome[0]
    assert kind == "timeout" and 0.4 < elapsed < 2.0
    ws.send("late")
    assert ws.recv(timeout=5) == "done"
    assert outcome[1] == "late"


def test_many_parked_connections_answer_a_ping_burst(start_server: Start, client: Any) -> None:
    server, conns, _ = parked_server(start_server)
    clients = [client(server) for _ in range(50)]
    for ws in clients:
        ws.send("hello")
        assert ws.recv(timeout=5) == "hello"
    assert wait_until(lambda: len(conns) == 50 and all(c._parked is not None for c in conns))
    threads_before = threading.active_count()
    waiters = [ws.ping() for ws in clients]
    assert all(w.wait(5) < 5 for w in waiters)
    assert all(c._parked is not None for c in conns)  # nobody was woken for a ping
    assert threading.active_count() == threads_before


@pytest.mark.skipif(not connection_module._BLOCKING_READS, reason="readers poll here")
def test_park_times_are_spread_so_a_burst_does_not_park_at_once(
    start_server: Start, client: Any
) -> None:
    # Connections opened together would otherwise all wake to park together: with
    # thousands of them that is thousands of threads waiting for the GIL at once
    # (a 10,000-connection burst froze the server for 30-120 s with a fixed 1 s).
    server, conns, _ = parked_server(start_server)
    clients = [client(server) for _ in range(12)]
    for ws in clients:
        ws.send("hi")
        assert ws.recv(timeout=5) == "hi"
    assert wait_until(lambda: len(conns) == 12)
    timeouts = []
    for conn in conns:
        raw = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16)
        seconds, micros = struct.unpack("ll", raw)
        timeouts.append(seconds + micros / 1e6)
    # From _PARK_AFTER (0.1 here) to twice it; the kernel keeps the timeout in clock
    # ticks (1-10 ms), rounded up.
    assert all(0.1 <= t <= 0.211 for t in timeouts), timeouts
    assert len(set(timeouts)) >= 4, timeouts  # 12 draws over at least 10 ticks
    assert wait_until(lambda: all(c._parked is not None for c in conns))
