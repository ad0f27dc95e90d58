"""transports._gate: the blocking recv and poll that queue woken readers before the GIL."""

from __future__ import annotations

import errno
import os
import select
import signal
import socket
import struct
import sys
import threading
import time
import warnings
from typing import Any, Iterator, List, Tuple

import pytest

from transports.threaded import connection as connection_module

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")


def test_built_and_used_on_linux() -> None:
    # setup.py builds it (optional=True): a silent build failure would bring back
    # the freeze under connection bursts (benchmarks.burst), so say it here.
    assert connection_module._gated_recv is not None, "transports._gate did not build"
    assert connection_module._gated_poll is not None


@pytest.fixture
def pair() -> Iterator[Tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def gate_recv() -> Any:
    return pytest.importorskip("transports._gate").recv


def gate_poll() -> Any:
    return pytest.importorskip("transports._gate").poll


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


def test_poll_reports_the_events_that_came(pair: Tuple[socket.socket, socket.socket]) -> None:
    poll = gate_poll()
    a, b = pair
    started = time.monotonic()
    assert poll(a.fileno(), select.POLLIN, 50) == 0  # nothing in time
    assert 0.04 < time.monotonic() - started < 2.0
    assert poll(a.fileno(), select.POLLIN | select.POLLOUT, 0) == select.POLLOUT
    b.sendall(b"x")
    assert poll(a.fileno(), select.POLLIN, 1000) == select.POLLIN
    b.close()
    assert poll(a.fileno(), select.POLLIN, 1000) & select.POLLIN  # EOF reads as readable
    spare = socket.socket()
    fd = spare.fileno()
    spare.close()
    assert poll(fd, select.POLLIN, 0) == select.POLLNVAL


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
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        with pytest.raises(RuntimeError, match="interrupted"):
            gate_poll()(a.fileno(), select.POLLIN, 5000)
        signal.signal(signal.SIGALRM, quiet)
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        assert gate_poll()(a.fileno(), select.POLLIN, 5000) == 0  # woken: look again
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_a_child_forked_while_the_gate_is_held_can_still_read() -> None:
    # A reader woken while this thread keeps the GIL holds the gate, waiting for
    # the GIL, when the fork happens: the child's gate must be open again.
    recv = gate_recv()
    reader_side, writer_side = socket.socketpair()
    child_side, child_peer = socket.socketpair()
    child_peer.sendall(b"child")
    thread = threading.Thread(target=recv, args=(reader_side.fileno(), 10))
    thread.start()
    time.sleep(0.1)  # the reader is in recv()
    interval = sys.getswitchinterval()
    pid = 0
    try:
        sys.setswitchinterval(10.0)  # keep the GIL in this thread
        writer_side.send(b"wake")
        end = time.perf_counter() + 0.1
        while time.perf_counter() < end:  # the reader wakes and queues for the GIL
            pass
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads
            pid = os.fork()
        if pid == 0:  # the child: one thread, the gate must not be held
            ok = recv(child_side.fileno(), 10) == b"child"
            os._exit(0 if ok else 1)
    finally:
        sys.setswitchinterval(interval)
    thread.join(5)
    deadline = time.monotonic() + 5
    status = None  # stays None if the child hangs
    while time.monotonic() < deadline:
        done, code = os.waitpid(pid, os.WNOHANG)
        if done:
            status = code
            break
        time.sleep(0.01)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    for s in (reader_side, writer_side, child_side, child_peer):
        s.close()
    assert status == 0, "the forked child hung on the gate (or failed to read)"
