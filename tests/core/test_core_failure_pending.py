"""Protocol errors held back (``failure_pending``): the messages before them can be answered."""

from __future__ import annotations

from typing import List, Tuple

import pytest
from core_support import Clock, Pair, closed, frame

from wscore import (
    Closed,
    Config,
    Fragment,
    Message,
    PayloadTooBig,
    Ping,
    RemoteProtocolError,
    State,
)
from wscore._framing import Framer

RSV2_TEXT = frame(0x1, b"bad", rsv=2)  # RSV2 set, no extension defines it


def read_frames(data: bytes, client: bool = True) -> List[Tuple[int, object]]:
    """(opcode, payload) of every frame in ``data`` as the client (or server) parses it."""
    framer = Framer(client, [], None)
    framer.receive_bytes(data)
    frames = []
    while True:
        got = framer.next_frame()
        if got is None:
            return frames
        frames.append((int(got.opcode), got.payload))


def held_pair(**server_options: object) -> Pair:
    pair = Pair(
        server_config=Config(compression=None, **server_options),  # type: ignore[arg-type]
        client_config=Config(compression=None),
    )
    pair.server.max_pending_messages = 16
    return pair


def test_messages_before_a_protocol_error_come_first_and_can_be_answered():
    pair = held_pair()
    server = pair.server
    server.receive_data(frame(0x1, b"Hello") + RSV2_TEXT + frame(0x9, b"p"))
    assert not server.failure_pending  # "Hello" is still to be taken
    assert server.more_buffered
    assert server.events() == [Message("Hello")]
    # The failure waits for the next events() call; until then the connection is OPEN.
    assert server.failure_pending and server.more_buffered
    assert server.state is State.OPEN and server.close_code is None
    server.send("Hello")  # the echo
    server.receive_data(frame(0x9, b"ignored"))  # dropped: nothing after the error is parsed
    event = closed(server.events())
    assert event.code == 1002 and isinstance(event.error, RemoteProtocolError)
    assert "Reserved bit" in str(event.error)
    assert server.state is State.CLOSED and server.close_code == 1002
    assert not server.failure_pending and not server.more_buffered
    assert server.events() == []
    # On the wire: the echo, then the close frame; no pong for the ping after the error.
    frames = read_frames(server.data_to_send())
    assert frames[0] == (0x1, "Hello")
    assert frames[1][0] == 0x8 and frames[1][1][0] == 1002  # type: ignore[index]
    assert len(frames) == 2


def test_without_max_pending_messages_the_connection_fails_at_once():
    pair = Pair(Config(compression=None), Config(compression=None))
    pair.server.receive_data(frame(0x1, b"Hello") + RSV2_TEXT)
    assert pair.server.state is State.CLOSED
    events = pair.server.events()
    assert events[0] == Message("Hello") and closed(events).code == 1002


def test_error_without_messages_before_fails_at_the_next_events_call():
    pair = held_pair()
    server = pair.server
    server.receive_data(RSV2_TEXT)
    assert server.failure_pending and server.state is State.OPEN
    assert closed(server.events()).code == 1002


def test_ping_before_the_error_is_answered_before_the_close():
    pair = held_pair()
    server = pair.server
    server.receive_data(frame(0x9, b"p") + RSV2_TEXT)
    assert server.events() == [Ping(b"p")]
    assert closed(server.events()).code == 1002
    frames = read_frames(server.data_to_send())
    assert [opcode for opcode, _ in frames] == [0xA, 0x8]


@pytest.mark.parametrize(
    "bad, code, kind",
    [
        (frame(0x5), 1002, RemoteProtocolError),  # reserved opcode
        (frame(0x0, b"x"), 1002, RemoteProtocolError),  # nothing to continue
        (frame(0x1, b"\xff"), 1007, RemoteProtocolError),  # invalid UTF-8
        (frame(0x2, b"x" * 200), 1009, PayloadTooBig),  # over max_size
    ],
    ids=["opcode", "continuation", "utf8", "too-big"],
)
def test_other_errors_are_held_back_too(bad, code, kind):
    pair = held_pair(max_size=100)
    server = pair.server
    server.receive_data(frame(0x2, b"ok") + bad)
    assert server.events() == [Message(b"ok")]
    assert server.failure_pending
    event = closed(server.events())
    assert event.code == code and type(event.error) is kind


def test_streaming_fragments_before_the_error():
    pair = held_pair(streaming=True)
    server = pair.server
    server.receive_data(frame(0x1, b"frag", fin=False) + frame(0x0, b"ment") + RSV2_TEXT)
    assert server.events() == [Fragment("frag", False), Fragment("ment", True)]
    assert closed(server.events()).code == 1002


def test_error_found_when_parsing_resumes_after_the_limit():
    pair = held_pair()
    server = pair.server
    server.max_pending_messages = 1
    server.receive_data(frame(0x2, b"a") + frame(0x2, b"b") + RSV2_TEXT)
    assert server.events() == [Message(b"a")]
    assert server.more_buffered and not server.failure_pending  # stalled, not failed yet
    assert server.events() == [Message(b"b")]
    assert server.more_buffered and not server.failure_pending
    # Parsing on finds the error with nothing before it: it fails in the same call.
    assert closed(server.events()).code == 1002


def test_error_found_when_parsing_resumes_after_messages():
    pair = held_pair()
    server = pair.server
    server.max_pending_messages = 1
    server.receive_data(frame(0x2, b"a") + frame(0x2, b"b") + RSV2_TEXT)
    assert server.events() == [Message(b"a")]
    server.max_pending_messages = 2
    assert server.events() == [Message(b"b")]  # then the error: held back
    assert server.failure_pending
    assert closed(server.events()).code == 1002


def test_client_side():
    pair = Pair(Config(compression=None), Config(compression=None))
    client = pair.client
    client.max_pending_messages = 16
    client.receive_data(frame(0x1, b"hi", mask=None) + frame(0x1, b"x", rsv=2, mask=None))
    assert client.events() == [Message("hi")]
    client.send("hi")
    assert closed(client.events()).code == 1002
    frames = read_frames(client.data_to_send(), client=False)
    assert frames[0] == (0x1, "hi") and frames[1][0] == 0x8


def test_eof_fails_it_at_once():
    pair = held_pair()
    server = pair.server
    server.receive_data(frame(0x1, b"Hello") + RSV2_TEXT)
    server.receive_data(b"")
    assert server.state is State.CLOSED
    events = server.events()
    assert events[0] == Message("Hello")
    event = closed(events)
    assert event.code == 1002 and isinstance(event.error, RemoteProtocolError)


def test_close_fails_it_with_the_error_code():
    pair = held_pair()
    server = pair.server
    server.receive_data(frame(0x1, b"Hello") + RSV2_TEXT)
    assert server.events() == [Message("Hello")]
    server.close(1000)
    assert server.state is State.CLOSED
    event = closed(server.events())
    assert event.code == 1002 and isinstance(event.error, RemoteProtocolError)
    frames = read_frames(server.data_to_send())
    assert frames == [(0x8, frames[0][1])] and frames[0][1][0] == 1002  # type: ignore[index]


def test_fail_overrides_it():
    pair = held_pair()
    server = pair.server
    server.receive_data(RSV2_TEXT)
    server.fail(1011, "going away")
    assert server.events() == [Closed(1011, "going away")]
    assert not server.failure_pending


def test_not_held_back_while_closing():
    pair = held_pair()
    server = pair.server
    server.close()
    server.receive_data(frame(0x1, b"Hello") + RSV2_TEXT)
    assert server.state is State.CLOSED
    assert closed(server.events()).code == 1002


def test_close_timeout_bounds_it():
    clock = Clock()
    pair = Pair(
        server_config=Config(compression=None, close_timeout=5, ping_interval=None),
        client_config=Config(compression=None),
        clock=clock,
    )
    server = pair.server
    server.max_pending_messages = 16
    server.receive_data(frame(0x1, b"Hello") + RSV2_TEXT)
    assert server.events() == [Message("Hello")]
    assert server.next_deadline() == clock() + 5
    server.handle_timers(clock.advance(4.9))
    assert server.state is State.OPEN
    server.handle_timers(clock.advance(0.1))
    assert server.state is State.CLOSED
    assert server.events() == [Closed(1002, server.close_reason or "", server.close_error)]
    assert isinstance(server.close_error, RemoteProtocolError)
    assert server.next_deadline() is None


def test_without_close_timeout_it_waits_and_keepalive_fails_it():
    clock = Clock()
    pair = Pair(
        server_config=Config(
            compression=None, close_timeout=None, ping_interval=10, ping_timeout=5
        ),
        client_config=Config(compression=None),
        clock=clock,
    )
    server = pair.server
    server.max_pending_messages = 16
    server.receive_data(RSV2_TEXT)
    assert server.next_deadline() == clock() + 10  # the keepalive ping, nothing sooner
    server.handle_timers(clock.advance(10))  # the ping goes out; the caller reads no pong
    assert server.state is State.OPEN and server.failure_pending
    server.handle_timers(clock.advance(5))
    assert server.state is State.CLOSED
    event = closed(server.events())
    assert event.code == 1002 and isinstance(event.error, RemoteProtocolError)  # not 1011
