"""Control frames: ping, pong, close; protocol errors; EOF."""

from __future__ import annotations

import pytest
from core_support import Clock, Pair, closed, frame

from wscore import (
    Closed,
    Config,
    InvalidState,
    LocalProtocolError,
    Message,
    Ping,
    Pong,
    RemoteProtocolError,
    State,
    check_close_code,
)

# -- ping / pong ---------------------------------------------------------------


def test_auto_pong_same_payload():
    pair = Pair()
    pair.server.receive_data(frame(0x9, b"hello"))
    assert pair.server.events() == [Ping(b"hello")]
    assert pair.server.data_to_send() == b"\x8a\x05hello"


def test_auto_pong_from_client_is_masked():
    pair = Pair()
    pair.client.receive_data(frame(0x9, b"abc", mask=None))
    assert pair.client.events() == [Ping(b"abc")]
    data = pair.client.data_to_send()
    assert data[:2] == b"\x8a\x83"
    pair.server.receive_data(data)
    assert pair.server.events() == [Pong(b"abc")]


def test_ping_latency_with_manual_clock():
    clock = Clock()
    pair = Pair(clock=clock)
    payload = pair.client.ping(b"p1")
    assert payload == b"p1"
    pair.to_server()
    assert pair.server.events() == [Ping(b"p1")]
    clock.advance(0.25)
    pair.to_client()
    (event,) = pair.client.events()
    assert event == Pong(b"p1", (b"p1",), 0.25)
    assert pair.client.latency == 0.25
    assert "latency=0.25" in repr(event)


def test_random_ping_payloads():
    pair = Pair()
    first, second = pair.server.ping(), pair.server.ping()
    assert len(first) == 4 and len(second) == 4 and first != second
    pair.to_client()
    assert pair.client.events() == [Ping(first), Ping(second)]
    pair.to_server()
    events = pair.server.events()
    assert events[0].acknowledged == (first,)
    assert events[1].acknowledged == (second,)


def test_pong_acknowledges_earlier_pings():
    clock = Clock()
    pair = Pair(clock=clock)
    pair.client.ping(b"a")
    clock.advance(1)
    pair.client.ping(b"b")
    clock.advance(1)
    pair.client.ping(b"c")
    pair.client.data_to_send()  # lost pings: only the last pong comes back
    clock.advance(0.5)
    pair.client.receive_data(frame(0xA, b"b", mask=None))
    (event,) = pair.client.events()
    assert event.acknowledged == (b"a", b"b") and event.latency == 1.5
    pair.client.receive_data(frame(0xA, b"c", mask=None))
    assert pair.client.events()[0].acknowledged == (b"c",)
    # Already answered: unsolicited now.
    pair.client.receive_data(frame(0xA, b"a", mask=None))
    assert pair.client.events() == [Pong(b"a")]


def test_unsolicited_pong():
    pair = Pair()
    pair.server.pong(b"beat")
    pair.to_client()
    (event,) = pair.client.events()
    assert event == Pong(b"beat") and event.acknowledged == () and event.latency is None
    assert pair.client.latency is None


def test_ping_payload_in_use():
    pair = Pair()
    pair.client.ping(b"x")
    with pytest.raises(LocalProtocolError, match="already waiting"):
        pair.client.ping(b"x")


def test_ping_payload_too_long():
    pair = Pair()
    with pytest.raises(ValueError):
        pair.client.ping(b"x" * 126)
    assert pair.client.data_to_send() == b""
    pair.client.ping(b"x" * 125)
    pair.to_server()
    assert pair.server.events() == [Ping(b"x" * 125)]


def test_many_pings_forget_the_oldest():
    pair = Pair()
    payloads = [pair.client.ping(i.to_bytes(2, "big")) for i in range(100)]
    pair.client.data_to_send()
    pair.client.receive_data(frame(0xA, payloads[0], mask=None))
    assert pair.client.events() == [Pong(payloads[0])]  # forgotten
    pair.client.receive_data(frame(0xA, payloads[-1], mask=None))
    (event,) = pair.client.events()
    assert len(event.acknowledged) == 64 and event.acknowledged[0] == payloads[36]


# -- close ---------------------------------------------------------------------------


@pytest.mark.parametrize("side", ["client", "server"])
@pytest.mark.parametrize("code, reason", [(1000, ""), (1001, "going away"), (4321, "cé")])
def test_close_handshake(side, code, reason):
    pair = Pair()
    initiator = getattr(pair, side)
    peer = pair.server if side == "client" else pair.client
    initiator.close(code, reason)
    assert initiator.state is State.CLOSING
    assert initiator.events() == []
    pair.deliver()
    (event,) = peer.events()
    assert event == Closed(code, reason) and event.ok == (code in (1000, 1001))
    assert peer.state is State.CLOSED
    assert peer.close_code == code and peer.close_reason == reason
    (event,) = initiator.events()
    assert event == Closed(code, "")  # the echo carries the code only
    assert initiator.state is State.CLOSED and initiator.next_deadline() is None


def test_close_frame_without_code():
    pair = Pair()
    pair.server.receive_data(frame(0x8, b""))
    event = closed(pair.server.events())
    assert event.code == 1005 and event.reason == "" and event.ok
    assert pair.server.data_to_send() == b"\x88\x00"  # echoed without a code


def test_close_frame_with_code_and_reason_on_the_wire():
    pair = Pair()
    pair.server.close(1001, "bye")
    assert pair.server.data_to_send() == b"\x88\x05\x03\xe9bye"


def test_close_is_idempotent():
    pair = Pair()
    pair.client.close()
    data = pair.client.data_to_send()
    pair.client.close(1001)
    assert pair.client.data_to_send() == b""
    pair.server.receive_data(data)
    pair.to_client()
    pair.client.close()
    assert pair.client.data_to_send() == b"" and pair.client.state is State.CLOSED


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000])
def test_invalid_close_code_sent(code):
    pair = Pair()
    with pytest.raises(LocalProtocolError, match=f"close code {code} cannot be sent"):
        pair.client.close(code)
    with pytest.raises(LocalProtocolError):
        pair.client.fail(code)
    assert pair.client.state is State.OPEN and pair.client.data_to_send() == b""


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4999])
def test_valid_close_codes(code):
    assert check_close_code(code, "ok") == b"ok"


def test_close_reason_too_long():
    pair = Pair()
    check_close_code(1000, "x" * 123)
    with pytest.raises(LocalProtocolError, match="124 bytes"):
        pair.client.close(1000, "x" * 124)
    with pytest.raises(LocalProtocolError, match="124 bytes"):
        pair.client.close(1000, "é" * 62)  # 124 bytes, 62 characters
    pair.client.close(1000, "é" * 61 + "x")
    pair.to_server()
    assert closed(pair.server.events()).reason == "é" * 61 + "x"


@pytest.mark.parametrize(
    "payload, code",
    [
        (b"\x03", 1002),
        ((999).to_bytes(2, "big"), 1002),
        ((1004).to_bytes(2, "big"), 1002),
        ((1005).to_bytes(2, "big"), 1002),
        ((1006).to_bytes(2, "big"), 1002),
        ((1015).to_bytes(2, "big"), 1002),
        ((2999).to_bytes(2, "big"), 1002),
        ((5000).to_bytes(2, "big"), 1002),
        ((1000).to_bytes(2, "big") + b"\xff", 1007),
    ],
)
def test_invalid_close_frame_received(payload, code):
    pair = Pair()
    pair.server.receive_data(frame(0x8, payload))
    event = closed(pair.server.events())
    assert event.code == code and isinstance(event.error, RemoteProtocolError)
    assert event.error.close_code == code
    pair.to_client()
    assert closed(pair.client.events()).code == code


@pytest.mark.parametrize("code", [1000, 1003, 1014, 3000, 4999])
def test_valid_close_frame_received(code):
    # Regression (1014): wsproto's list of codes lacks it; it was refused with 1002.
    pair = Pair()
    pair.server.receive_data(frame(0x8, code.to_bytes(2, "big") + b"why"))
    assert pair.server.events() == [Closed(code, "why")]
    assert pair.server.data_to_send() == frame(0x8, code.to_bytes(2, "big"), mask=None)


def test_close_1014_both_ways():
    pair = Pair()
    pair.server.close(1014, "upstream down")
    pair.deliver()
    assert pair.client.events() == [Closed(1014, "upstream down")]
    assert pair.server.events() == [Closed(1014, "")]


def test_close_1014_with_invalid_reason():
    pair = Pair()
    pair.server.receive_data(frame(0x8, b"\x03\xf6\xff"))
    assert closed(pair.server.events()).code == 1007


def test_send_after_close():
    pair = Pair()
    pair.client.close()
    for call in (lambda: pair.client.send("x"), pair.client.ping, pair.client.pong):
        with pytest.raises(InvalidState, match="connection is closing"):
            call()
    pair.deliver()
    for call in (lambda: pair.client.send("x"), pair.client.ping, pair.client.pong):
        with pytest.raises(InvalidState, match=r"connection is closed \(state CLOSED\)"):
            call()


def test_messages_still_received_while_closing():
    pair = Pair()
    pair.server.send("in flight")
    pair.server.ping(b"p")
    pair.client.close()
    pair.to_client()
    events = pair.client.events()
    assert events == [Message("in flight"), Ping(b"p")]
    assert pair.client.data_to_send()[:1] == b"\x88"  # no pong while closing
    assert pair.client.state is State.CLOSING


def test_frames_after_close_frame_ignored():
    pair = Pair()
    pair.server.receive_data(frame(0x8, b"\x03\xe8") + frame(0x1, b"late"))
    assert pair.server.events() == [Closed(1000, "")]


def test_fail():
    pair = Pair()
    error = RuntimeError("boom")
    pair.server.fail(1011, "internal", error)
    event = closed(pair.server.events())
    assert event == Closed(1011, "internal", error) and not event.ok
    assert pair.server.state is State.CLOSED
    pair.to_client()
    assert pair.client.events() == [Closed(1011, "internal")]
    pair.server.fail(1000)
    assert pair.server.events() == []


def test_fail_while_closing_or_connecting():
    pair = Pair()
    pair.client.close()
    pair.client.fail(1002)
    assert closed(pair.client.events()).code == 1002  # after our close frame (1000)
    pair2 = Pair(accept=False)
    pair2.client.fail(1002)
    assert closed(pair2.client.events()).code == 1006


# -- protocol errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, message",
    [
        (frame(0x1, b"x", rsv=2), "Reserved bit"),
        (frame(0x1, b"x", rsv=1), "Reserved bit"),
        (frame(0x3, b""), "Invalid opcode 0x3"),
        (frame(0xB, b""), "Invalid opcode 0xb"),
        (frame(0x1, b"x", mask=None), "unexpected unmasked frame"),
        (frame(0x9, b"", fin=False), "fragment control frame"),
        (frame(0x0, b"x"), "unexpected CONTINUATION"),
        (frame(0x1, b"x", fin=False) + frame(0x2, b"y"), "expected CONTINUATION"),
        (b"\x81\xfe\x00\x05\x00\x00\x00\x00hello", "2 bytes when 1"),
        (b"\x89\xfe\x00\x80" + b"\x00" * 132, "Control frame with payload len > 125"),
        (frame(0x9, b"x", rsv=4), ""),
    ],
)
def test_protocol_errors(data, message):
    pair = Pair()
    pair.server.receive_data(data)
    event = closed(pair.server.events())
    assert event.code == 1002 and type(event.error) is RemoteProtocolError
    assert message in str(event.error)
    assert event.error.close_code == 1002 and not event.ok
    pair.to_client()
    assert closed(pair.client.events()).code == 1002


def test_masked_frame_to_client():
    pair = Pair()
    pair.client.receive_data(frame(0x1, b"x"))
    event = closed(pair.client.events())
    assert event.code == 1002 and "unexpected masked frame" in str(event.error)


# -- EOF ---------------------------------------------------------------------------------


@pytest.mark.parametrize("side", ["client", "server"])
def test_eof_when_open(side):
    pair = Pair()
    conn = getattr(pair, side)
    conn.receive_data(b"")
    event = closed(conn.events())
    assert event.code == 1006 and event.error is None and not event.ok
    assert conn.data_to_send() == b""  # no close frame after EOF


def test_eof_when_closing():
    pair = Pair()
    pair.client.close()
    pair.client.receive_data(b"")
    assert closed(pair.client.events()).code == 1006


def test_eof_mid_frame():
    pair = Pair()
    pair.server.receive_data(frame(0x1, b"partial message")[:5])
    pair.server.receive_data(b"")
    assert pair.server.events() == [Closed(1006)]


def test_unknown_default_config():
    pair = Pair(Config(), Config())
    assert pair.client.config == Config()
