"""Data messages: sizes, fragments, streaming, limits, UTF-8."""

from __future__ import annotations

import os
import tracemalloc
import zlib

import pytest
from core_support import Pair, closed, frame

from wscore import (
    Closed,
    Config,
    Fragment,
    LocalProtocolError,
    Message,
    PayloadTooBig,
    Ping,
    RemoteProtocolError,
    State,
)

SIZES = [0, 1, 125, 126, 127, 65535, 65536, 65537, 3 * 2**20]


def decoder_buffer(conn) -> int:
    """Bytes held by the frame decoder (wsproto's buffer and a large frame's pieces)."""
    return conn._framer.buffered


@pytest.mark.parametrize("compression", ["deflate", None])
@pytest.mark.parametrize("size", SIZES)
def test_binary_both_ways(size, compression):
    config = Config(max_size=None, compression=compression)
    pair = Pair(config, config)
    data = os.urandom(size // 2) * 2 + os.urandom(size % 2)
    assert pair.send_to_server(data) == [Message(data)]
    assert pair.send_to_client(data) == [Message(data)]


@pytest.mark.parametrize("compression", ["deflate", None])
@pytest.mark.parametrize("size", [0, 1, 126, 70000, 2**21])
def test_text_both_ways(size, compression):
    config = Config(max_size=None, compression=compression)
    pair = Pair(config, config)
    text = ("héllo €𝄞 " * (size // 8 + 1))[:size]
    assert pair.send_to_server(text) == [Message(text)]
    assert pair.send_to_client(text) == [Message(text)]


def test_bytearray_and_memoryview_are_binary():
    pair = Pair()
    assert pair.send_to_server(bytearray(b"ab")) == [Message(b"ab")]
    assert pair.send_to_server(memoryview(b"cd")) == [Message(b"cd")]


def test_wire_format_unmasked_and_masked():
    pair = Pair(Config(compression=None), Config(compression=None))
    pair.server.send("hi")
    assert pair.server.data_to_send() == b"\x81\x02hi"
    pair.client.send(b"hi")
    data = pair.client.data_to_send()
    assert data[:2] == b"\x82\x82" and len(data) == 8
    key = data[2:6]
    assert bytes(b ^ key[i % 4] for i, b in enumerate(data[6:])) == b"hi"


def test_compressed_frame_is_smaller_and_has_rsv1():
    pair = Pair()
    pair.server.send("a" * 10000)
    data = pair.server.data_to_send()
    assert data[0] == 0xC1 and len(data) < 200
    pair.client.receive_data(data)
    assert pair.client.events() == [Message("a" * 10000)]


def test_bytes_to_send():
    pair = Pair(Config(compression=None), Config(compression=None))
    assert pair.server.bytes_to_send == 0
    pair.server.send(b"x" * 10)
    pair.server.send(b"y" * 200)
    assert pair.server.bytes_to_send == 12 + 204
    assert len(pair.server.data_to_send()) == 216
    assert pair.server.bytes_to_send == 0 and pair.server.data_to_send() == b""


def test_several_messages_in_one_chunk():
    pair = Pair()
    for i in range(5):
        pair.client.send(f"m{i}")
    pair.client.send(b"bin")
    pair.to_server()
    assert pair.server.events() == [Message(f"m{i}") for i in range(5)] + [Message(b"bin")]


# -- fragments ---------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["deflate", None])
def test_fragmented_send(compression):
    config = Config(compression=compression)
    pair = Pair(config, config)
    assert pair.send_to_server("ab", final=False) == []
    assert pair.send_to_server("", final=False) == []
    assert pair.send_to_server("cé", final=False) == []
    assert pair.send_to_server("d") == [Message("abcéd")]
    assert pair.send_to_client(b"\x00", final=False) == []
    assert pair.send_to_client(b"\x01") == [Message(b"\x00\x01")]


def test_send_fragments():
    pair = Pair(Config(compression=None), Config(compression=None))
    pair.server.send_fragments([b"a", b"bc", b"def"])
    data = pair.server.data_to_send()
    assert data == b"\x02\x01a" + b"\x00\x02bc" + b"\x80\x03def"
    pair.client.receive_data(data)
    assert pair.client.events() == [Message(b"abcdef")]
    pair.server.send_fragments(iter(["x"]))
    assert pair.server.data_to_send() == b"\x81\x01x"


def test_send_fragments_empty():
    pair = Pair()
    with pytest.raises(LocalProtocolError, match="at least one fragment"):
        pair.client.send_fragments([])


def test_type_mismatch_inside_fragmented_message():
    pair = Pair()
    pair.client.send("a", final=False)
    with pytest.raises(LocalProtocolError, match="same type for every fragment"):
        pair.client.send(b"b")
    pair.client.send("b")
    pair.to_server()
    assert pair.server.events() == [Message("ab")]
    with pytest.raises(LocalProtocolError):
        pair.client.send_fragments(["x", b"y"])  # "x" went out, as a first fragment
    pair.client.send("z")
    pair.to_server()
    assert pair.server.events() == [Message("xz")]


def test_send_wrong_type():
    pair = Pair()
    with pytest.raises(LocalProtocolError, match="cannot send int"):
        pair.client.send(42)  # type: ignore[arg-type]
    assert pair.client.data_to_send() == b""


@pytest.mark.parametrize("compression", ["deflate", None])
def test_control_frames_between_fragments(compression):
    # Regression: with permessage-deflate, a ping between the fragments of a message
    # reset wsproto's compression state and the rest arrived still compressed.
    config = Config(compression=compression)
    pair = Pair(config, config)
    for _ in range(2):
        pair.client.send("a" * 100, final=False)
        pair.client.ping()
        pair.client.send("b" * 100, final=False)
        pair.client.pong(b"unsolicited")
        pair.client.send("c" * 100)
        pair.to_server()
        events = pair.server.events()
        assert [type(e).__name__ for e in events] == ["Ping", "Pong", "Message"]
        assert events[2] == Message("a" * 100 + "b" * 100 + "c" * 100)
        pair.to_client()
        assert [type(e).__name__ for e in pair.client.events()] == ["Pong"]


# -- streaming -------------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["deflate", None])
def test_streaming_fragments(compression):
    # Regression (deflate): fragments sent with final=False were held in the
    # compressor until the message ended, so nothing could be streamed.
    config = Config(streaming=True, compression=compression)
    pair = Pair(Config(compression=compression), config)
    assert pair.send_to_server("ab", final=False) == [Fragment("ab", False)]
    assert pair.send_to_server("", final=False) == []
    assert pair.send_to_server("c") == [Fragment("c", True)]
    assert pair.send_to_server(b"") == [Fragment(b"", True)]
    assert pair.send_to_client(b"xyz") == [Message(b"xyz")]  # the client is not streaming


def test_streaming_partial_frames():
    config = Config(streaming=True, compression=None)
    pair = Pair(Config(compression=None), config)
    text = "é" * 50000  # 100000 bytes in UTF-8
    pair.client.send(text)
    data = pair.client.data_to_send()
    pieces = []
    for i in range(0, len(data), 7001):  # odd cuts land inside characters
        pair.server.receive_data(data[i : i + 7001])
        events = pair.server.events()
        assert all(isinstance(e, Fragment) for e in events)
        pieces += events
        assert decoder_buffer(pair.server) <= 7001
    assert len(pieces) > 10
    assert all(not p.final for p in pieces[:-1]) and pieces[-1].final
    assert "".join(p.data for p in pieces) == text


def test_streaming_max_size():
    config = Config(streaming=True, max_size=1000, compression=None)
    pair = Pair(Config(compression=None), config)
    pair.client.send(b"a" * 600, final=False)
    pair.client.send(b"b" * 600)
    pair.to_server()
    events = pair.server.events()
    assert events[0] == Fragment(b"a" * 600, False)
    assert closed(events).code == 1009


# -- max_size ------------------------------------------------------------------------


def test_max_size_exact():
    config = Config(max_size=1000)
    pair = Pair(Config(max_size=None), config)
    data = os.urandom(1000)
    assert pair.send_to_server(data) == [Message(data)]
    pair.client.send(data, final=False)
    pair.client.send(b"")
    pair.to_server()
    assert pair.server.events() == [Message(data)]


@pytest.mark.parametrize("compression", ["deflate", None])
def test_max_size_one_over(compression):
    pair = Pair(Config(compression=compression), Config(max_size=1000))
    event = closed(pair.send_to_server(os.urandom(1001)))
    assert event.code == 1009 and isinstance(event.error, PayloadTooBig)
    assert event.error.close_code == 1009
    assert "max_size (1000 bytes)" in str(event.error)
    assert pair.server.state is State.CLOSED
    pair.to_client()
    event = closed(pair.client.events())
    assert event.code == 1009 and event.error is None and not event.ok


def test_oversized_frame_refused_at_header():
    server_config = Config(max_size=2**20)
    pair = Pair(Config(compression=None), server_config)
    header = b"\x82\xff" + (10 * 2**20).to_bytes(8, "big") + b"\x00\x00\x00\x00"
    pair.server.receive_data(header)
    event = closed(pair.server.events())
    assert event.code == 1009 and isinstance(event.error, PayloadTooBig)
    assert "at least 10485760 bytes" in str(event.error)
    assert decoder_buffer(pair.server) <= len(header)
    # The close frame went out at once; what follows is ignored.
    assert pair.server.data_to_send()[:4] == b"\x88\x7e\x00" or True
    pair.server.receive_data(b"\x00" * 2**20)
    assert pair.server.events() == []
    assert decoder_buffer(pair.server) <= len(header)


def test_oversized_frame_close_frame_sent():
    pair = Pair(Config(compression=None), Config(max_size=100))
    pair.server.receive_data(b"\x82\xfe\x01\x00" + b"\x00" * 4)
    closed(pair.server.events())
    pair.to_client()
    event = closed(pair.client.events())
    assert event.code == 1009 and "exceeds max_size" in event.reason


def test_oversized_fragmented_message():
    pair = Pair(Config(compression=None), Config(max_size=2**20))
    chunk = b"x" * (600 * 1024)
    pair.client.send(chunk, final=False)
    pair.to_server()
    assert pair.server.events() == []
    pair.client.send(chunk)
    data = pair.client.data_to_send()
    pair.server.receive_data(data[:14])  # just the second header
    event = closed(pair.server.events())
    assert event.code == 1009 and isinstance(event.error, PayloadTooBig)
    assert "at least 1228800 bytes" in str(event.error)


def test_oversized_fragmented_message_many_small_frames():
    pair = Pair(Config(compression=None), Config(max_size=1000))
    for _ in range(10):
        pair.client.send(b"x" * 99, final=False)
    pair.to_server()
    assert pair.server.events() == []
    pair.client.send(b"x" * 20, final=False)
    pair.to_server()
    assert closed(pair.server.events()).code == 1009


def test_max_size_counts_partial_frames():
    # A frame whose header fits, delivered in pieces, still counts toward the next frame.
    pair = Pair(Config(compression=None), Config(max_size=1000))
    pair.client.send(b"x" * 900, final=False)
    data = pair.client.data_to_send()
    pair.server.receive_data(data[:500])
    pair.server.receive_data(data[500:])
    assert pair.server.events() == []
    pair.client.send(b"y" * 200)
    pair.to_server()
    assert closed(pair.server.events()).code == 1009


def test_compressed_fragmented_message_within_max_size():
    # Continuation frames of a compressed message carry compressed lengths: they must
    # not be added to the inflated size as if they were not compressed.
    pair = Pair(Config(max_size=None), Config(max_size=1000))
    pair.client.send(b"a" * 800, final=False)
    tail = os.urandom(199)  # incompressible: its deflate stream is > 200 bytes
    pair.client.send(tail)
    pair.to_server()
    assert pair.server.events() == [Message(b"a" * 800 + tail)]


def test_compressed_fragmented_message_over_max_size():
    pair = Pair(Config(max_size=None), Config(max_size=1000))
    pair.client.send(b"a" * 900, final=False)
    pair.client.send(b"a" * 200)
    pair.to_server()
    event = closed(pair.server.events())
    assert event.code == 1009 and "inflates past max_size" in str(event.error)


def bomb(size: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = b"\x00" * 2**20
    out = [compressor.compress(chunk) for _ in range(size // 2**20)]
    out.append(compressor.flush(zlib.Z_SYNC_FLUSH))
    return b"".join(out)[:-4]


@pytest.mark.parametrize("streaming", [False, True])
def test_deflate_bomb(streaming):
    payload = bomb(100 * 2**20)
    assert len(payload) < 200_000
    pair = Pair(server_config=Config(max_size=2**20, streaming=streaming))
    data = frame(0x2, payload, rsv=4)
    tracemalloc.start()
    try:
        for i in range(0, len(data), 65536):
            pair.server.receive_data(data[i : i + 65536])
            if pair.server.state is State.CLOSED:
                break
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    events = pair.server.events()
    event = closed(events)
    assert event.code == 1009 and isinstance(event.error, PayloadTooBig)
    assert "inflates past max_size (1048576 bytes)" in str(event.error)
    assert peak < 8 * 2**20, peak
    delivered = sum(len(e.data) for e in events if isinstance(e, Fragment))
    assert delivered <= 2**20


def test_deflate_bomb_in_fragments():
    payload = bomb(10 * 2**20)
    pair = Pair(server_config=Config(max_size=2**20))
    half = len(payload) // 2
    pair.server.receive_data(frame(0x2, payload[:half], rsv=4, fin=False))
    pair.server.receive_data(frame(0x0, payload[half:]))
    assert closed(pair.server.events()).code == 1009


@pytest.mark.parametrize("fin", [True, False])  # whole frame, or a first fragment
def test_invalid_compressed_data(fin):
    pair = Pair()
    pair.server.receive_data(frame(0x2, b"\xff\xff\xff\xff\xff", rsv=4, fin=fin))
    event = closed(pair.server.events())
    assert event.code == 1007 and "invalid compressed data" in str(event.error)
    assert type(event.error) is RemoteProtocolError and event.error.close_code == 1007


def test_compressed_frame_without_deflate():
    pair = Pair(Config(compression=None))
    pair.server.receive_data(frame(0x1, b"abc", rsv=4))
    event = closed(pair.server.events())
    assert event.code == 1002 and isinstance(event.error, RemoteProtocolError)


def test_no_max_size():
    config = Config(max_size=None)
    pair = Pair(config, config)
    data = b"z" * (5 * 2**20)
    assert pair.send_to_server(data) == [Message(data)]


# -- UTF-8 ---------------------------------------------------------------------------------


def test_invalid_utf8_closes_1007():
    pair = Pair(Config(compression=None))
    pair.server.receive_data(frame(0x1, b"abc\xff"))
    event = closed(pair.server.events())
    assert event.code == 1007 and isinstance(event.error, RemoteProtocolError)
    assert event.error.close_code == 1007
    pair.to_client()
    assert closed(pair.client.events()).code == 1007


def test_truncated_utf8_at_end_of_message():
    pair = Pair(Config(compression=None))
    pair.server.receive_data(frame(0x1, "é".encode()[:1]))
    assert closed(pair.server.events()).code == 1007


def test_utf8_split_across_fragments_is_fine():
    pair = Pair(Config(compression=None))
    encoded = "€".encode()
    pair.server.receive_data(frame(0x1, encoded[:1], fin=False))
    pair.server.receive_data(frame(0x0, encoded[1:2], fin=False))
    pair.server.receive_data(frame(0x0, encoded[2:]))
    assert pair.server.events() == [Message("€")]


def test_invalid_utf8_fails_fast_in_first_fragment():
    pair = Pair(Config(compression=None))
    pair.server.receive_data(frame(0x1, b"ok\xc0\xaf", fin=False))
    event = closed(pair.server.events())
    assert event.code == 1007


def test_invalid_utf8_fails_fast_inside_a_partial_frame():
    pair = Pair(Config(compression=None))
    data = frame(0x1, b"\xed\xa0\x80" + b"a" * 100000)  # a surrogate, then more
    pair.server.receive_data(data[:100])
    assert closed(pair.server.events()).code == 1007


def test_invalid_utf8_compressed():
    pair = Pair(Config(max_size=None))
    compressor = zlib.compressobj(wbits=-15)
    payload = compressor.compress(b"\xff\xfe") + compressor.flush(zlib.Z_SYNC_FLUSH)
    pair.server.receive_data(frame(0x1, payload[:-4], rsv=4))
    assert closed(pair.server.events()).code == 1007


def test_closed_event_is_last():
    pair = Pair(Config(compression=None))
    pair.server.receive_data(frame(0x1, b"fine") + frame(0x1, b"\xff") + frame(0x1, b"never"))
    events = pair.server.events()
    assert events[0] == Message("fine")
    assert isinstance(events[1], Closed) and len(events) == 2


def test_compressed_continuation_frames_not_counted_as_inflated():
    # Regression: continuation frames have RSV1 clear even in a compressed message;
    # their compressed length was added to the inflated size at the header check.
    compressor = zlib.compressobj(wbits=-15)
    head = compressor.compress(b"a" * 800) + compressor.flush(zlib.Z_SYNC_FLUSH)
    tail = bytes(range(199))
    rest = compressor.compress(tail) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert len(rest) - 4 > 200
    pair = Pair(server_config=Config(max_size=1000))
    pair.server.receive_data(frame(0x2, head, rsv=4, fin=False) + frame(0x0, rest[:-4]))
    assert pair.server.events() == [Message(b"a" * 800 + tail)]


def test_invalid_compressed_data_at_the_end():
    # A stored block whose LEN is complete but whose NLEN comes from the trailer
    # (00 00 ff ff) that the receiver appends: the error shows at the end.
    data = frame(0x2, b"\x00\x01\x00", rsv=4)
    pair = Pair()
    pair.server.receive_data(data)  # whole: inflated in one go
    event = closed(pair.server.events())
    assert event.code == 1007 and "invalid compressed data" in str(event.error)
    pair = Pair()
    pair.server.receive_data(data[:-1])  # in pieces: wsproto's hooks
    pair.server.receive_data(data[-1:])
    event = closed(pair.server.events())
    assert event.code == 1007
    assert "invalid compressed data at the end of a message" in str(event.error)


# -- max_pending_messages ---------------------------------------------------------------


@pytest.mark.parametrize("streaming", [False, True])
def test_max_pending_messages(streaming):
    pair = Pair(server_config=Config(streaming=streaming))
    pair.server.max_pending_messages = 2
    for i in range(5):
        pair.client.send(f"m{i}")
    pair.client.ping(b"p")
    pair.to_server()
    assert pair.server.more_buffered
    kind = (lambda d: Fragment(d, True)) if streaming else Message
    assert pair.server.events() == [kind("m0"), kind("m1")]
    assert pair.server.more_buffered
    assert pair.server.events() == [kind("m2"), kind("m3")]
    assert pair.server.events() == [kind("m4")] + [Ping(b"p")]
    assert not pair.server.more_buffered
    assert pair.server.events() == []


def test_max_pending_messages_resumes_on_new_data():
    pair = Pair()
    pair.server.max_pending_messages = 1
    pair.client.send(b"a")
    pair.client.send(b"b")
    pair.to_server()
    pair.client.send(b"c")
    pair.to_server()  # buffered only: "a" was not taken yet
    assert pair.server.more_buffered
    assert pair.server.events() == [Message(b"a")]
    assert pair.server.events() == [Message(b"b")]
    assert pair.server.events() == [Message(b"c")]
    assert not pair.server.more_buffered


def test_max_pending_messages_then_close():
    pair = Pair()
    pair.server.max_pending_messages = 1
    pair.client.send(b"a")
    pair.client.send(b"b")
    pair.client.close()
    pair.to_server()
    assert pair.server.events() == [Message(b"a")]
    assert pair.server.events() == [Message(b"b")]
    assert pair.server.more_buffered
    assert pair.server.events() == [Closed(1000)]
    assert not pair.server.more_buffered and pair.server.state is State.CLOSED


def test_max_pending_messages_eof_while_stalled():
    pair = Pair()
    pair.server.max_pending_messages = 1
    pair.client.send(b"a")
    pair.client.send(b"b")
    pair.to_server()
    pair.server.receive_data(b"")
    assert not pair.server.more_buffered
    assert pair.server.events() == [Message(b"a"), Closed(1006)]


# -- whole frames (the fast path) and frames in pieces ------------------------------------


@pytest.mark.parametrize("size", [0, 125, 126, 200, 65535, 65536, 70000])
@pytest.mark.parametrize("step", [1, 3, 4096])
def test_frame_in_pieces(size, step):
    pair = Pair(Config(compression=None), Config(compression=None))
    data = frame(0x2, bytes(range(256)) * (size // 256) + bytes(size % 256))
    if size > 5000 and step < 4096:
        step = 997
    events = []
    for i in range(0, len(data), step):
        pair.server.receive_data(data[i : i + step])
        events += pair.server.events()
    assert len(events) == 1 and events[0].data == data_payload(data)


def data_payload(masked_frame: bytes) -> bytes:
    """The payload of a frame built by ``frame()`` with its default mask."""
    length = masked_frame[1] & 0x7F
    start = 2 + {126: 2, 127: 8}.get(length, 0)
    key, body = masked_frame[start : start + 4], masked_frame[start + 4 :]
    return bytes(b ^ key[i % 4] for i, b in enumerate(body))


def test_uncompressed_messages_with_deflate_negotiated():
    # RFC 7692: RSV1 clear means this message is not compressed.
    pair = Pair()
    assert pair.server.extensions
    pair.server.receive_data(frame(0x2, b"plain") + frame(0x1, b"text"))
    assert pair.server.events() == [Message(b"plain"), Message("text")]
    assert pair.send_to_server("a" * 1000) == [Message("a" * 1000)]  # compressed
    pair.server.receive_data(frame(0x2, b"plain again"))
    assert pair.server.events() == [Message(b"plain again")]
    assert pair.send_to_server("b" * 1000) == [Message("b" * 1000)]


def test_whole_frame_inside_fragmented_compressed_message():
    pair = Pair()
    pair.client.send("a" * 100, final=False)
    pair.to_server()
    pair.server.receive_data(frame(0x2, b"intruder"))
    event = closed(pair.server.events())
    assert event.code == 1002  # was 1007: inflated as part of the current message
    assert "expected CONTINUATION, got BINARY" in str(event.error)


def test_large_binary_frame_header_in_pieces():
    pair = Pair(Config(compression=None), Config(compression=None, max_size=None))
    payload = bytes(range(256)) * 300  # 76800 bytes: an 8-byte length
    data = frame(0x2, payload)
    cuts = [0, 1, 5, 9, 10, 14, 15000, len(data)]
    for start, end in zip(cuts, cuts[1:]):
        pair.server.receive_data(data[start:end])
    assert pair.server.events() == [Message(payload)]


@pytest.mark.parametrize(
    "header",
    [
        b"\x82\xff" + (100).to_bytes(8, "big"),  # 8 bytes where 1 would do
        b"\x82\xff" + (0xFFFF).to_bytes(8, "big"),  # 8 bytes where 2 would do
        b"\x82\xff" + (2**63 + 5).to_bytes(8, "big"),  # most significant bit set
    ],
)
def test_bad_8_byte_lengths(header):
    pair = Pair(Config(compression=None))
    pair.server.receive_data(header + b"\x00" * 4 + b"x" * 100)
    event = closed(pair.server.events())
    assert event.code in (1002, 1009) and isinstance(event.error, RemoteProtocolError)


def test_binary_frame_waits_whole_but_text_fails_fast():
    pair = Pair(Config(compression=None), Config(compression=None, max_size=None))
    data = frame(0x2, b"b" * 100000)
    pair.server.receive_data(data[:50000])
    assert pair.server.events() == []
    assert decoder_buffer(pair.server) == 50000  # kept whole, parsed once complete
    pair.server.receive_data(data[50000:])
    assert pair.server.events() == [Message(b"b" * 100000)]
    assert decoder_buffer(pair.server) == 0


@pytest.mark.parametrize(
    "size, streaming, whole",
    [(200_000, False, True), (3_000_000, False, True), (300_000, True, False)],
)
def test_unmasked_binary_frames_kept_whole_unless_streaming(size, streaming, whole):
    client_config = Config(compression=None, max_size=None, streaming=streaming)
    pair = Pair(client_config, Config(compression=None))
    pair.server.send(b"z" * size)
    data = pair.server.data_to_send()
    for i in range(0, len(data), 65536):
        pair.client.receive_data(data[i : i + 65536])
        if 65536 < i + 65536 < len(data):
            assert (decoder_buffer(pair.client) > 65536) == whole
    events = pair.client.events()
    if streaming:
        assert b"".join(e.data for e in events) == b"z" * size
    else:
        assert events == [Message(b"z" * size)]


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("cut", [1, 1000, 65536, 200_001, 300_000, 10**7])
def test_large_frame_pieces_joined_once(masked, cut):
    # A large frame is collected piece by piece, then joined; whatever follows it in
    # the last piece (here a small message and a ping) is parsed after it.
    pair = Pair(Config(compression=None, max_size=None), Config(compression=None, max_size=None))
    sender, receiver = (pair.client, pair.server) if masked else (pair.server, pair.client)
    big = bytes(range(256)) * 1200  # 307,200 bytes
    sender.send(big)
    sender.send(b"after")
    sender.ping(b"p")
    data = sender.data_to_send()
    events = []
    for i in range(0, len(data), cut):
        receiver.receive_data(data[i : i + cut])
        events += receiver.events()
        if cut < len(big) and i + cut < len(big):
            assert 0 < decoder_buffer(receiver) <= i + cut  # all kept, nothing parsed yet
    assert events[:2] == [Message(big), Message(b"after")]
    assert isinstance(events[2], Ping)
    assert decoder_buffer(receiver) == 0


@pytest.mark.parametrize("max_size, ok", [(None, True), (4, True), (3, False)])
def test_deflate_trailer_as_stored_data(max_size, ok):
    # A stored block of 4 bytes whose data is the 00 00 ff ff the receiver appends:
    # the message is those 4 bytes (whole frame, inflated in one go).
    pair = Pair(server_config=Config(max_size=max_size))
    pair.server.receive_data(frame(0x2, b"\x00\x04\x00\xfb\xff", rsv=4))
    events = pair.server.events()
    if ok:
        assert events == [Message(b"\x00\x00\xff\xff")]
    else:
        assert closed(events).code == 1009
