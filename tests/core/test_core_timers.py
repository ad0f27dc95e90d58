"""Timers with a manual clock: keepalive, ping_timeout, close_timeout, open_timeout."""

from __future__ import annotations

from typing import Optional

from core_support import Clock, Pair, closed, handshake_request
from hypothesis import given
from hypothesis import strategies as st

from wscore import (
    ClientConnection,
    CloseTimeout,
    Config,
    KeepaliveTimeout,
    OpenTimeout,
    Ping,
    Pong,
    ServerConnection,
    State,
)


def test_keepalive_ping_at_interval():
    clock = Clock(100.0)
    config = Config(ping_interval=5, ping_timeout=3)
    pair = Pair(config, Config(ping_interval=None), clock=clock)
    assert pair.client.next_deadline() == 105.0
    assert pair.server.next_deadline() is None
    clock.advance(4.9)
    pair.client.handle_timers()
    assert pair.client.data_to_send() == b""
    clock.advance(0.1)
    pair.client.handle_timers()
    assert pair.client.next_deadline() == 108.0  # the pong deadline comes first
    pair.to_server()
    (ping,) = pair.server.events()
    assert isinstance(ping, Ping) and len(ping.payload) == 4
    clock.advance(1.0)
    pair.to_client()
    (pong,) = pair.client.events()
    assert isinstance(pong, Pong) and pong.acknowledged == (ping.payload,)
    assert pong.latency == 1.0 and pair.client.latency == 1.0
    assert pair.client.next_deadline() == 110.0  # next ping; no pong deadline
    clock.advance(10)
    pair.client.handle_timers()
    assert pair.client.data_to_send()[:1] == b"\x89"
    assert pair.client.state is State.OPEN


def test_keepalive_timeout():
    clock = Clock(0.0)
    config = Config(ping_interval=5, ping_timeout=3)
    pair = Pair(Config(ping_interval=None), config, clock=clock)
    clock.advance(5)
    pair.server.handle_timers()
    pair.to_client()  # the client answers, but the pong is lost
    pair.client.data_to_send()
    assert pair.server.next_deadline() == 8.0
    clock.advance(2.9)
    pair.server.handle_timers()
    assert pair.server.state is State.OPEN
    clock.advance(0.1)
    pair.server.handle_timers()
    event = closed(pair.server.events())
    assert event.code == 1011 and event.reason == "keepalive ping timeout"
    assert isinstance(event.error, KeepaliveTimeout) and isinstance(event.error, TimeoutError)
    assert "ping_timeout (3s)" in str(event.error)
    assert pair.server.state is State.CLOSED and pair.server.next_deadline() is None
    pair.to_client()
    assert closed(pair.client.events()).code == 1011


def test_keepalive_timeout_longer_than_interval():
    clock = Clock(0.0)
    pair = Pair(Config(ping_interval=2, ping_timeout=5), Config(ping_interval=None), clock=clock)
    pings = 0
    for _ in range(10):
        clock.advance(1)
        pair.client.handle_timers()
        data = pair.client.data_to_send()
        pings += data.count(b"\x89\x84")
        if pair.client.state is State.CLOSED:
            break
    assert clock() == 7.0  # first ping at 2, deadline at 7
    assert pings == 3  # at 2, 4 and 6: the deadline stays that of the first
    assert closed(pair.client.events()).code == 1011


def test_ping_timeout_none():
    clock = Clock(0.0)
    pair = Pair(Config(ping_interval=1, ping_timeout=None), clock=clock)
    for _ in range(5):
        clock.advance(1)
        pair.client.handle_timers()
        assert pair.client.next_deadline() == clock() + 1
    assert pair.client.data_to_send().count(b"\x89\x84") == 5
    assert pair.client.state is State.OPEN


def test_handle_timers_with_explicit_now():
    clock = Clock(0.0)
    pair = Pair(Config(ping_interval=1), clock=clock)
    pair.client.handle_timers(now=0.5)
    assert pair.client.data_to_send() == b""
    pair.client.handle_timers(now=1.0)
    assert pair.client.data_to_send()[:1] == b"\x89"


def test_close_timeout():
    clock = Clock(0.0)
    pair = Pair(Config(close_timeout=2, ping_interval=1), clock=clock)
    pair.client.close()
    assert pair.client.next_deadline() == 2.0  # no keepalive while closing
    clock.advance(1.99)
    pair.client.handle_timers()
    assert pair.client.state is State.CLOSING
    clock.advance(0.01)
    pair.client.handle_timers()
    event = closed(pair.client.events())
    assert event.code == 1006 and isinstance(event.error, CloseTimeout)
    assert "within 2s" in str(event.error)
    assert pair.client.next_deadline() is None


def test_close_timeout_none():
    clock = Clock(0.0)
    pair = Pair(Config(close_timeout=None, ping_interval=None), clock=clock)
    pair.client.close()
    assert pair.client.next_deadline() is None
    clock.advance(10**6)
    pair.client.handle_timers()
    assert pair.client.state is State.CLOSING


def test_open_timeout_server_silent_client():
    clock = Clock(50.0)
    server = ServerConnection(Config(open_timeout=3), clock=clock)
    assert server.next_deadline() == 53.0
    server.receive_data(b"GET / HTTP/1.1\r\n")
    clock.advance(3)
    server.handle_timers()
    event = closed(server.events())
    assert event.code == 1006 and isinstance(event.error, OpenTimeout)
    assert "within 3s" in str(event.error)
    assert server.data_to_send() == b""


def test_open_timeout_server_request_not_answered():
    clock = Clock(0.0)
    server = ServerConnection(Config(open_timeout=3), clock=clock)
    server.receive_data(handshake_request())
    server.events()
    clock.advance(3)
    server.handle_timers()
    assert isinstance(closed(server.events()).error, OpenTimeout)


def test_open_timeout_client():
    clock = Clock(0.0)
    client = ClientConnection("ws://x/", Config(open_timeout=1.5), clock=clock)
    assert client.next_deadline() == 1.5
    clock.advance(1.4)
    client.handle_timers()
    assert client.state is State.CONNECTING
    clock.advance(0.1)
    client.handle_timers()
    assert isinstance(closed(client.events()).error, OpenTimeout)


def test_open_timeout_cleared_on_open():
    clock = Clock(0.0)
    config = Config(open_timeout=1, ping_interval=None)
    pair = Pair(config, config, clock=clock)
    assert pair.client.next_deadline() is None and pair.server.next_deadline() is None
    clock.advance(100)
    pair.client.handle_timers()
    pair.server.handle_timers()
    assert pair.client.state is State.OPEN and pair.server.state is State.OPEN


def test_open_timeout_none():
    clock = Clock(0.0)
    server = ServerConnection(Config(open_timeout=None), clock=clock)
    assert server.next_deadline() is None
    clock.advance(10**6)
    server.handle_timers()
    assert server.state is State.CONNECTING and server.events() == []


def test_no_deadline_when_closed():
    clock = Clock(0.0)
    pair = Pair(clock=clock)
    pair.client.receive_data(b"")
    assert pair.client.next_deadline() is None
    clock.advance(1000)
    pair.client.handle_timers()
    assert closed(pair.client.events()).code == 1006


def test_default_clock_is_monotonic():
    import time

    before = time.monotonic()
    server = ServerConnection(Config(open_timeout=10))
    deadline = server.next_deadline()
    assert deadline is not None and before + 10 <= deadline <= time.monotonic() + 10
    server.handle_timers()
    assert server.state is State.CONNECTING


def test_keepalive_ping_not_forgotten_among_many_pings():
    # Regression: the keepalive ping was the oldest, so the 65th ping forgot it;
    # its pong then looked unsolicited and the connection died with 1011.
    clock = Clock(0.0)
    pair = Pair(Config(ping_interval=1, ping_timeout=10), Config(ping_interval=None), clock=clock)
    clock.advance(1)
    pair.client.handle_timers()
    for i in range(70):
        pair.client.ping(i.to_bytes(2, "big"))
    pair.deliver()  # the server answers every ping, the keepalive first
    events = pair.client.events()
    assert all(isinstance(e, Pong) for e in events) and len(events) == 71
    assert events[0].acknowledged and events[0].latency == 0.0
    assert pair.client.next_deadline() == 2.0  # the next ping; no pong deadline
    clock.advance(20)
    pair.client.handle_timers()
    pair.deliver()
    assert pair.client.state is State.OPEN


_DEADLINES = (
    "_open_deadline", "_ping_due", "_pong_deadline", "_close_deadline", "_failure_deadline"
)


@given(st.lists(st.one_of(st.none(), st.floats(0, 1e6)), min_size=5, max_size=5))
def test_next_deadline_is_the_earliest_timer(values: list[Optional[float]]) -> None:
    conn = ServerConnection()
    for name, value in zip(_DEADLINES, values):
        setattr(conn, name, value)
    due = [value for value in values if value is not None]
    assert conn.next_deadline() == (min(due) if due else None)
