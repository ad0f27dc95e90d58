"""transports._gate: the blocking recv that queues woken readers before the GIL."""

from __future__ import annotations

import errno
import signal
import socket
import struct
import sys
import threading
import time
from typing import Any, Iterator, List, Tuple

import pytest

from transports.threaded import connection as connection_module

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")


def test_built_and_used_on_linux() -> None:
    # setup.py builds it (optional=True): a silent build failure would bring back
    # the freeze under connection bursts (benchmarks.burst), so say it here.
    assert connection_module._gated_recv is not None, "transports._gate did not build"


@pytest.fixture
def pair() -> Iterator[Tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def gate_recv() -> Any:
    return pytest.importorskip("transports._gate").recv


def test_recv_returns_what_came(pair: Tuple[socket.socket, socket.socket]) -> None:
    recv = gate_recv()
    a, b = pair
    b.sendall(b"hello")
    assert recv(a.fileno(), 100) == b"hello"
    b.sendall(b"x" * 300)
    assert recv(a.fileno(), 100) == b"x" * 100  # at most size
    assert recv(a.fileno(), 1000) == b"x" * 200  # the rest, trimmed to what came


def test_recv_times_out_with_none(pair: Tuple[socket.socket, socket.socket]) -> None:
    recv = gate_recv()
    a, _ = pair
    a.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 50_000))
    started = time.monotonic()
    assert recv(a.fileno(), 100) is None
    assert 0.04 < time.monotonic() - started < 2.0


def test_recv_eof_and_errors(pair: Tuple[socket.socket, socket.socket]) -> None:
    recv = gate_recv()
    a, b = pair
    b.close()
    assert recv(a.fileno(), 100) == b""
    spare = socket.socket()
    fd = spare.fileno()
    spare.close()
    with pytest.raises(OSError) as info:
        recv(fd, 100)
    assert info.value.errno == errno.EBADF
    with pytest.raises(ValueError):
        recv(a.fileno(), 0)


def test_many_threads_wake_together_and_all_return() -> None:
    recv = gate_recv()
    pairs = [socket.socketpair() for _ in range(50)]
    got: List[Any] = []
    try:
        threads = [
            threading.Thread(target=lambda s=s: got.append(recv(s.fileno(), 10)))
            for s, _ in pairs
        ]
        for thread in threads:
            thread.start()
        time.sleep(0.1)
        for _, peer in pairs:
            peer.sendall(b"go")
        for thread in threads:
            thread.join(10)
        assert got == [b"go"] * 50
    finally:
        for s, peer in pairs:
            s.close()
            peer.close()


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals")
def test_signals_are_handled_while_waiting(pair: Tuple[socket.socket, socket.socket]) -> None:
    # As socket.recv (PEP 475): a handler that raises ends the wait with its
    # exception; one that returns lets the wait go on.
    recv = gate_recv()
    a, b = pair
    calls: List[int] = []

    def quiet(signum: int, frame: Any) -> None:
        calls.append(signum)
        if len(calls) == 2:
            b.sendall(b"after the signals")

    def loud(signum: int, frame: Any) -> None:
        raise RuntimeError("interrupted")

    previous = signal.signal(signal.SIGALRM, quiet)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05, 0.05)
        assert recv(a.fileno(), 100) == b"after the signals"
        signal.setitimer(signal.ITIMER_REAL, 0)
        assert len(calls) >= 2
        signal.signal(signal.SIGALRM, loud)
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        with pytest.raises(RuntimeError, match="interrupted"):
            recv(a.fileno(), 100)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
